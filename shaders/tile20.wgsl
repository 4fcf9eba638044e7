// tile20: a 10×10 workgroup computes a 20×20 tile of C, 2×2 outputs per thread, K in slabs of 20.
// Thread (x, y) owns rows y and y + 10 and columns x and x + 10 of the tile, so the stores of a row
// of threads are contiguous. The four accumulators are separate variables: an indexed private array
// would be spilled to memory.
//
// Every global access is guarded, so the module runs without wgpu's runtime bounds checks.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    lda: u32,
    ldb: u32,
    ldc: u32,
    alpha: f32,
    beta: f32,
}

override TRANS_A: bool = false;
override TRANS_B: bool = false;

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

const TILE: u32 = 20u;
const SIDE: u32 = 10u;
const THREADS: u32 = 100u;
// Each slab holds TILE×TILE = 400 elements per operand: 4 loads per thread.
const LOADS: u32 = 4u;

var<workgroup> a_tile: array<array<f32, TILE>, TILE>;
var<workgroup> b_tile: array<array<f32, TILE>, TILE>;

fn load_a(row: u32, col: u32) -> f32 {
    if (row >= params.m || col >= params.k) {
        return 0.0;
    }
    if (TRANS_A) {
        return a[col * params.lda + row];
    }
    return a[row * params.lda + col];
}

fn load_b(row: u32, col: u32) -> f32 {
    if (row >= params.k || col >= params.n) {
        return 0.0;
    }
    if (TRANS_B) {
        return b[col * params.ldb + row];
    }
    return b[row * params.ldb + col];
}

fn store(row: u32, col: u32, acc: f32) {
    if (row < params.m && col < params.n) {
        let index = row * params.ldc + col;
        if (params.beta == 0.0) {
            c[index] = params.alpha * acc;
        } else {
            c[index] = params.alpha * acc + params.beta * c[index];
        }
    }
}

@compute @workgroup_size(10, 10, 1)
fn main(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_id) local: vec3<u32>) {
    let tile_row = group.y * TILE;
    let tile_col = group.x * TILE;
    let flat = local.y * SIDE + local.x;
    var acc00 = 0.0;
    var acc01 = 0.0;
    var acc10 = 0.0;
    var acc11 = 0.0;
    for (var k0 = 0u; k0 < params.k; k0 += TILE) {
        for (var i = 0u; i < LOADS; i++) {
            // `inner` runs along the stored rows, so consecutive threads read consecutive addresses.
            let e = flat + i * THREADS;
            let outer = e / TILE;
            let inner = e % TILE;
            if (TRANS_A) {
                a_tile[outer][inner] = load_a(tile_row + inner, k0 + outer);
            } else {
                a_tile[inner][outer] = load_a(tile_row + outer, k0 + inner);
            }
            if (TRANS_B) {
                b_tile[inner][outer] = load_b(k0 + inner, tile_col + outer);
            } else {
                b_tile[outer][inner] = load_b(k0 + outer, tile_col + inner);
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
