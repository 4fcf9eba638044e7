// Pass 2 of split-K (src/backend/gpu/split_k.rs): C ← α · Σ_s P_s + β · C. The m×n partial
// products P_s lie packed one after another in binding `a` (row stride n, one every
// `params.stride_a` elements); `params.k` counts them. Binding `b` is not read.
//
// A workgroup sums 16 quads of C (x, consecutive along C's rows, so a row of threads reads 256
// contiguous bytes); its 16 threads per quad (y) each add every 16th slice, then the 16 sums are
// halved in workgroup memory. The order is fixed, so a result repeats bit for bit. The grid is flat
// over C's quads, row by row, folded into x and y under the dispatch limit.

const QUADS: u32 = 16u;
const SLICE_LANES: u32 = 16u;

var<workgroup> lane_sums: array<vec4<f32>, 256>;

/// Columns col..col+4 of row `row` of partial product `slice`, 0 past column n.
fn partial_quad(slice: u32, row: u32, col: u32) -> vec4<f32> {
    let base = slice * params.stride_a + row * params.n + col;
    // n % 4 == 0: every quad is whole and 16-byte aligned (the slice stride m·n is too).
    if (params.n % 4u == 0u) {
        return a[base / 4u];
    }
    var q = vec4<f32>(0.0);
    for (var e = 0u; e < 4u; e++) {
        if (col + e < params.n) {
            let i = base + e;
            q[e] = a[i / 4u][i % 4u];
        }
    }
    return q;
}

@compute @workgroup_size(16, 16, 1)
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_id) local: vec3<u32>,
) {
    let row_quads = (params.n + 3u) / 4u;
    let c_quad = (group.y * groups.x + group.x) * QUADS + local.x;
    let row = c_quad / row_quads;
    let col = (c_quad % row_quads) * 4u;
    var sum = vec4<f32>(0.0);
    if (row < params.m) {
        for (var slice = local.y; slice < params.k; slice += SLICE_LANES) {
            sum += partial_quad(slice, row, col);
        }
    }
    let slot = local.y * QUADS + local.x;
    lane_sums[slot] = sum;
    for (var width = SLICE_LANES / 2u; width > 0u; width /= 2u) {
        workgroupBarrier();
        if (local.y < width) {
            lane_sums[slot] += lane_sums[slot + width * QUADS];
        }
    }
    if (local.y == 0u) {
        store4(row, col, lane_sums[slot]);
    }
}
