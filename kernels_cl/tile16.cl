// tile16: the seed's baseline, the same tiling as shaders/tile16.wgsl. A 16×16 work-group computes
// one 16×16 tile of C, one output per thread, stepping through K in slabs of 16 in local memory.
// Seed signature (M, N, K, alpha, A, B, beta, C), then the leading dimensions. Built with
// -D TRANS_A=0|1 -D TRANS_B=0|1. Every global access is guarded: any M, N, K.

#define TILE 16

// op(A)[row, col], or 0 outside the matrix.
inline float load_a(__global const float* A, uint row, uint col, uint M, uint K, uint lda) {
    if (row >= M || col >= K) return 0.0f;
#if TRANS_A
    return A[(size_t)col * lda + row];
#else
    return A[(size_t)row * lda + col];
#endif
}

// op(B)[row, col], or 0 outside the matrix.
inline float load_b(__global const float* B, uint row, uint col, uint K, uint N, uint ldb) {
    if (row >= K || col >= N) return 0.0f;
#if TRANS_B
    return B[(size_t)col * ldb + row];
#else
    return B[(size_t)row * ldb + col];
#endif
}

__kernel __attribute__((reqd_work_group_size(16, 16, 1)))
void gemm(const uint M, const uint N, const uint K, const float alpha,
          __global const float* restrict A, __global const float* restrict B,
          const float beta, __global float* restrict C,
          const uint lda, const uint ldb, const uint ldc) {
    // K-major tiles: a_tile[kk][i] = op(A)[tile_row + i, k0 + kk], b_tile[kk][j] = op(B)[k0 + kk, tile_col + j].
    __local float a_tile[TILE][TILE];
    __local float b_tile[TILE][TILE];
    const uint lx = get_local_id(0), ly = get_local_id(1);
    const uint tile_row = get_group_id(1) * TILE, tile_col = get_group_id(0) * TILE;
    float acc = 0.0f;
    for (uint k0 = 0; k0 < K; k0 += TILE) {
        // Neighbouring threads (in x) read neighbouring addresses of the operand as stored.
#if TRANS_A
        a_tile[ly][lx] = load_a(A, tile_row + lx, k0 + ly, M, K, lda);
#else
        a_tile[lx][ly] = load_a(A, tile_row + ly, k0 + lx, M, K, lda);
#endif
#if TRANS_B
        b_tile[lx][ly] = load_b(B, k0 + lx, tile_col + ly, K, N, ldb);
#else
        b_tile[ly][lx] = load_b(B, k0 + ly, tile_col + lx, K, N, ldb);
#endif
        barrier(CLK_LOCAL_MEM_FENCE);
        for (uint kk = 0; kk < TILE; kk++) acc += a_tile[kk][ly] * b_tile[kk][lx];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const uint row = tile_row + ly, col = tile_col + lx;
    if (row < M && col < N) {
        const size_t index = (size_t)row * ldc + col;
        // beta == 0 must not read C: it may hold NaN.
        C[index] = beta == 0.0f ? alpha * acc : alpha * acc + beta * C[index];
    }
}
