// tile24: the same tiling as shaders/tile24.wgsl. A 12×12 work-group computes a 24×24 tile of C,
// 2×2 outputs per thread, K in slabs of 24 with float4 loads: a slab of either operand, as stored,
// is 24 rows of 24 floats = 144 quads, one per thread (`quad`).

#define TILE 24
#define SIDE 12
#define QUADS_PER_ROW 6

__kernel __attribute__((reqd_work_group_size(12, 12, 1)))
void gemm(GEMM_ARGS) {
    ENTER_BATCH();
    __local float a_tile[TILE][TILE];
    __local float b_tile[TILE][TILE];
    const uint lx = get_local_id(0), ly = get_local_id(1);
    const uint tile_row = get_group_id(1) * TILE, tile_col = get_group_id(0) * TILE;
    // This thread's quad within a slab as stored: stored row srow, stored columns scol..scol+4.
    const uint flat = ly * SIDE + lx;
    const uint srow = flat / QUADS_PER_ROW, scol = (flat % QUADS_PER_ROW) * 4;
    float acc00 = 0.0f, acc01 = 0.0f, acc10 = 0.0f, acc11 = 0.0f;
    for (uint k0 = 0; k0 < K; k0 += TILE) {
#if TRANS_A
        // Stored k×m: the quad runs along M.
        const float4 qa = quad(A, k0 + srow, tile_row + scol, K, M, lda);
        a_tile[srow][scol] = qa.x; a_tile[srow][scol + 1] = qa.y;
        a_tile[srow][scol + 2] = qa.z; a_tile[srow][scol + 3] = qa.w;
#else
        // Stored m×k: the quad runs along K.
        const float4 qa = quad(A, tile_row + srow, k0 + scol, M, K, lda);
        a_tile[scol][srow] = qa.x; a_tile[scol + 1][srow] = qa.y;
        a_tile[scol + 2][srow] = qa.z; a_tile[scol + 3][srow] = qa.w;
#endif
#if TRANS_B
        // Stored n×k: the quad runs along K.
        const float4 qb = quad(B, tile_col + srow, k0 + scol, N, K, ldb);
        b_tile[scol][srow] = qb.x; b_tile[scol + 1][srow] = qb.y;
        b_tile[scol + 2][srow] = qb.z; b_tile[scol + 3][srow] = qb.w;
#else
        // Stored k×n: the quad runs along N.
        const float4 qb = quad(B, k0 + srow, tile_col + scol, K, N, ldb);
        b_tile[srow][scol] = qb.x; b_tile[srow][scol + 1] = qb.y;
        b_tile[srow][scol + 2] = qb.z; b_tile[srow][scol + 3] = qb.w;
#endif
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
