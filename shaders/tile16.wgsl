// tile16: the seed's baseline. A 16×16 workgroup computes one 16×16 tile of C, one output per thread,
// stepping through K in slabs of 16 staged in workgroup memory.

const TILE: u32 = 16u;

// Both tiles are K-major: a_tile[kk][i] = op(A)[tile_row + i, k0 + kk], b_tile[kk][j] = op(B)[k0 + kk, tile_col + j].
var<workgroup> a_tile: array<array<f32, TILE>, TILE>;
var<workgroup> b_tile: array<array<f32, TILE>, TILE>;

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_id) local: vec3<u32>) {
    enter_batch(group.z);
    let tile_row = group.y * TILE;
    let tile_col = group.x * TILE;
    var acc = 0.0;
    for (var k0 = 0u; k0 < params.k; k0 += TILE) {
        // Neighbouring threads (in x) read neighbouring columns of the operand as stored.
        if (TRANS_A) {
            a_tile[local.y][local.x] = elem_a(k0 + local.y, tile_row + local.x);
        } else {
            a_tile[local.x][local.y] = elem_a(tile_row + local.y, k0 + local.x);
        }
        if (TRANS_B) {
            b_tile[local.x][local.y] = elem_b(tile_col + local.y, k0 + local.x);
        } else {
            b_tile[local.y][local.x] = elem_b(k0 + local.y, tile_col + local.x);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TILE; kk++) {
            acc += a_tile[kk][local.y] * b_tile[kk][local.x];
        }
        workgroupBarrier();
    }
    store(tile_row + local.y, tile_col + local.x, acc);
}
