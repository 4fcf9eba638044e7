// tile20: a 10×10 workgroup computes a 20×20 tile of C, 2×2 outputs per thread, K in slabs of 20.
// Thread (x, y) owns rows y and y + 10 and columns x and x + 10 of the tile, so the stores of a row
// of threads are contiguous. The four accumulators are separate variables: an indexed private array
// would be spilled to memory.

const TILE: u32 = 20u;
const SIDE: u32 = 10u;
const THREADS: u32 = 100u;
// Each slab holds TILE×TILE = 400 elements per operand: 4 loads per thread.
const LOADS: u32 = 4u;

var<workgroup> a_tile: array<array<f32, TILE>, TILE>;
var<workgroup> b_tile: array<array<f32, TILE>, TILE>;

@compute @workgroup_size(10, 10, 1)
fn main(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_id) local: vec3<u32>) {
    enter_batch(group.z);
    let tile_row = group.y * TILE;
    let tile_col = group.x * TILE;
    let flat = local.y * SIDE + local.x;
    var acc00 = 0.0;
    var acc01 = 0.0;
    var acc10 = 0.0;
    var acc11 = 0.0;
    for (var k0 = 0u; k0 < params.k; k0 += TILE) {
        for (var i = 0u; i < LOADS; i++) {
            // Element (outer, inner) of each slab as stored: `inner` runs along the stored rows, so
            // consecutive threads read consecutive addresses.
            let e = flat + i * THREADS;
            let outer = e / TILE;
            let inner = e % TILE;
            if (TRANS_A) {
                a_tile[outer][inner] = elem_a(k0 + outer, tile_row + inner);
            } else {
                a_tile[inner][outer] = elem_a(tile_row + outer, k0 + inner);
            }
            if (TRANS_B) {
                b_tile[inner][outer] = elem_b(tile_col + outer, k0 + inner);
            } else {
                b_tile[outer][inner] = elem_b(k0 + outer, tile_col + inner);
            }
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
