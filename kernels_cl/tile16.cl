// tile16: the seed's baseline, the same tiling as shaders/tile16.wgsl. A 16×16 work-group computes
// one 16×16 tile of C, one output per thread, stepping through K in slabs of 16 in local memory.

#define TILE 16

__kernel __attribute__((reqd_work_group_size(16, 16, 1)))
void gemm(GEMM_ARGS) {
    ENTER_BATCH();
    // K-major tiles: a_tile[kk][i] = op(A)[tile_row + i, k0 + kk], b_tile[kk][j] = op(B)[k0 + kk, tile_col + j].
    __local float a_tile[TILE][TILE];
    __local float b_tile[TILE][TILE];
    const uint lx = get_local_id(0), ly = get_local_id(1);
    const uint tile_row = get_group_id(1) * TILE, tile_col = get_group_id(0) * TILE;
    float acc = 0.0f;
    for (uint k0 = 0; k0 < K; k0 += TILE) {
        // Neighbouring threads (in x) read neighbouring columns of the operand as stored.
#if TRANS_A
        a_tile[ly][lx] = elem(A, k0 + ly, tile_row + lx, K, M, lda);
#else
        a_tile[lx][ly] = elem(A, tile_row + ly, k0 + lx, M, K, lda);
#endif
#if TRANS_B
        b_tile[lx][ly] = elem(B, tile_col + ly, k0 + lx, N, K, ldb);
#else
        b_tile[ly][lx] = elem(B, k0 + ly, tile_col + lx, K, N, ldb);
#endif
        barrier(CLK_LOCAL_MEM_FENCE);
        for (uint kk = 0; kk < TILE; kk++) acc += a_tile[kk][ly] * b_tile[kk][lx];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    store(C, tile_row + ly, tile_col + lx, acc, M, N, ldc, alpha, beta);
}
