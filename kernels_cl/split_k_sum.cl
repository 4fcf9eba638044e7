// Pass 2 of split-K (src/backend/gpu/split_k.rs), as shaders/split_k_sum.wgsl: C ← α · Σ_s P_s +
// β · C, the m×n partial products P_s packed in A (row stride N, one every stride_a elements), K of
// them. B is not read. A work-group sums 16 quads of C (x); its 16 work-items per quad (y) each add
// every 16th slice, then the sums are halved in local memory, in a fixed order. The grid is flat
// over C's quads, row by row, folded into x and y.

#define QUADS 16u
#define SLICE_LANES 16u

__kernel __attribute__((reqd_work_group_size(16, 16, 1)))
void gemm(GEMM_ARGS) {
    __local float4 lane_sums[QUADS * SLICE_LANES];
    const uint lx = get_local_id(0), ly = get_local_id(1);
    const uint row_quads = (N + 3u) / 4u;
    const uint c_quad = (get_group_id(1) * get_num_groups(0) + get_group_id(0)) * QUADS + lx;
    const uint row = c_quad / row_quads, col = (c_quad % row_quads) * 4u;
    float4 sum = (float4)(0.0f);
    if (row < M) {
        for (uint slice = ly; slice < K; slice += SLICE_LANES) {
            sum += quad(A + (size_t)slice * stride_a, row, col, M, N, N);
        }
    }
    const uint slot = ly * QUADS + lx;
    lane_sums[slot] = sum;
    for (uint width = SLICE_LANES / 2u; width > 0u; width /= 2u) {
        barrier(CLK_LOCAL_MEM_FENCE);
        if (ly < width) {
            lane_sums[slot] += lane_sums[slot + width * QUADS];
        }
    }
    if (ly == 0u) {
        store4(row, col, lane_sums[slot]);
    }
}
