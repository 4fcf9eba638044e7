// tile20: the same tiling as shaders/tile20.wgsl. A 10×10 work-group computes a 20×20 tile of C,
// 2×2 outputs per thread (rows ly, ly+10; columns lx, lx+10), K in slabs of 20: 4 loads per thread
// per operand.

#define TILE 20
#define SIDE 10
#define THREADS 100
#define LOADS 4

__kernel __attribute__((reqd_work_group_size(10, 10, 1)))
void gemm(GEMM_ARGS) {
    ENTER_BATCH();
    __local float a_tile[TILE][TILE];
    __local float b_tile[TILE][TILE];
    const uint lx = get_local_id(0), ly = get_local_id(1);
    const uint flat = ly * SIDE + lx;
    const uint tile_row = get_group_id(1) * TILE, tile_col = get_group_id(0) * TILE;
    float acc00 = 0.0f, acc01 = 0.0f, acc10 = 0.0f, acc11 = 0.0f;
    for (uint k0 = 0; k0 < K; k0 += TILE) {
        for (uint i = 0; i < LOADS; i++) {
            // Element (outer, inner) of each slab as stored: `inner` runs along the stored rows, so
            // consecutive threads read consecutive addresses.
            const uint e = flat + i * THREADS, outer = e / TILE, inner = e % TILE;
#if TRANS_A
            a_tile[outer][inner] = elem(A, k0 + outer, tile_row + inner, K, M, lda);
#else
            a_tile[inner][outer] = elem(A, tile_row + outer, k0 + inner, M, K, lda);
#endif
#if TRANS_B
            b_tile[inner][outer] = elem(B, tile_col + outer, k0 + inner, N, K, ldb);
#else
            b_tile[outer][inner] = elem(B, k0 + outer, tile_col + inner, K, N, ldb);
#endif
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (uint kk = 0; kk < TILE; kk++) {
            const float a0 = a_tile[kk][ly], a1 = a_tile[kk][ly + SIDE];
            const float b0 = b_tile[kk][lx], b1 = b_tile[kk][lx + SIDE];
            acc00 += a0 * b0;
            acc01 += a0 * b1;
            acc10 += a1 * b0;
            acc11 += a1 * b1;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const uint row = tile_row + ly, col = tile_col + lx;
    store(C, row, col, acc00, M, N, ldc, alpha, beta);
    store(C, row, col + SIDE, acc01, M, N, ldc, alpha, beta);
    store(C, row + SIDE, col, acc10, M, N, ldc, alpha, beta);
    store(C, row + SIDE, col + SIDE, acc11, M, N, ldc, alpha, beta);
}
