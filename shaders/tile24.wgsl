// tile24: a 12×12 workgroup computes a 24×24 tile of C, 2×2 outputs per thread, K in slabs of 24,
// with vec4 global loads. A slab of either operand, as stored, is 24 rows of 24 floats = 144 quads:
// each thread loads exactly one quad of A and one of B per slab (`quad_a`, `quad_b`).

const TILE: u32 = 24u;
const SIDE: u32 = 12u;
const QUADS_PER_ROW: u32 = 6u;

var<workgroup> a_tile: array<array<f32, TILE>, TILE>;
var<workgroup> b_tile: array<array<f32, TILE>, TILE>;

@compute @workgroup_size(12, 12, 1)
fn main(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_id) local: vec3<u32>) {
    enter_batch(group.z);
    let tile_row = group.y * TILE;
    let tile_col = group.x * TILE;
    // This thread's quad within a slab as stored: stored row `srow`, stored columns scol..scol+4.
    let flat = local.y * SIDE + local.x;
    let srow = flat / QUADS_PER_ROW;
    let scol = (flat % QUADS_PER_ROW) * 4u;
    var acc00 = 0.0;
    var acc01 = 0.0;
    var acc10 = 0.0;
    var acc11 = 0.0;
    for (var k0 = 0u; k0 < params.k; k0 += TILE) {
        if (TRANS_A) {
            // Stored k×m: the quad runs along M.
            let q = quad_a(k0 + srow, tile_row + scol);
            a_tile[srow][scol] = q.x;
            a_tile[srow][scol + 1u] = q.y;
            a_tile[srow][scol + 2u] = q.z;
            a_tile[srow][scol + 3u] = q.w;
        } else {
            // Stored m×k: the quad runs along K.
            let q = quad_a(tile_row + srow, k0 + scol);
            a_tile[scol][srow] = q.x;
            a_tile[scol + 1u][srow] = q.y;
            a_tile[scol + 2u][srow] = q.z;
            a_tile[scol + 3u][srow] = q.w;
        }
        if (TRANS_B) {
            // Stored n×k: the quad runs along K.
            let q = quad_b(tile_col + srow, k0 + scol);
            b_tile[scol][srow] = q.x;
            b_tile[scol + 1u][srow] = q.y;
            b_tile[scol + 2u][srow] = q.z;
            b_tile[scol + 3u][srow] = q.w;
        } else {
            // Stored k×n: the quad runs along N.
            let q = quad_b(k0 + srow, tile_col + scol);
            b_tile[srow][scol] = q.x;
            b_tile[srow][scol + 1u] = q.y;
            b_tile[srow][scol + 2u] = q.z;
            b_tile[srow][scol + 3u] = q.w;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TILE; kk++) {
            let a0 = a_tile[kk][local.y];
            let a1 = a_tile[kk][local.y + SIDE];
            let b0 = b_tile[kk][local.x];
            let b1 = b_tile[kk][local.x + SIDE];
            acc00 += a0 * b0;
            acc01 += a0 * b1;
            acc10 += a1 * b0;
            acc11 += a1 * b1;
        }
        workgroupBarrier();
    }
    let row = tile_row + local.y;
    let col = tile_col + local.x;
    store(row, col, acc00);
    store(row, col + SIDE, acc01);
    store(row + SIDE, col, acc10);
    store(row + SIDE, col + SIDE, acc11);
}
