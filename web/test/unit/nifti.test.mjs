// The NIfTI writer read back byte by byte (header fields, dims, sform, qform, pixdim, data),
// through gzip, and by this module's reader.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gunzipSync, gzipSync } from 'node:zlib';
import { writeNifti, readNifti, gzip, maybeGunzip, affineToQuaternion, quaternionToAffine } from '../../src/nifti.js';
import { obliqueAffine } from './affines.mjs';

const dims = [7, 5, 3];
const data = Uint8Array.from({ length: 105 }, (_, i) => (i * 37) % 256);

function close(a, b, tol, what) {
  a.forEach((row, r) => row.forEach((v, c) => assert.ok(Math.abs(v - b[r][c]) < tol, `${what} [${r}][${c}] ${v} != ${b[r][c]}`)));
}

test('header fields, dims, sform, pixdim and data as written', () => {
  const affine = obliqueAffine();
  const bytes = writeNifti({ dims, affine, data });
  const v = new DataView(bytes.buffer);
  assert.equal(v.getInt32(0, true), 348);
  assert.deepEqual([0, 1, 2, 3, 4].map((i) => v.getInt16(40 + 2 * i, true)), [3, 7, 5, 3, 1]);
  assert.equal(v.getInt16(70, true), 2, 'uint8');
  assert.equal(v.getInt16(72, true), 8, 'bitpix');
  assert.equal(v.getFloat32(108, true), 352, 'vox_offset');
  assert.equal(v.getInt16(254, true), 1, 'sform_code');
  assert.equal(v.getInt16(252, true), 1, 'qform_code');
  assert.equal(String.fromCharCode(...bytes.subarray(344, 348)), 'n+1\0');
  const pixdim = [1, 2, 3].map((i) => v.getFloat32(76 + 4 * i, true));
  pixdim.forEach((p, i) => assert.ok(Math.abs(p - [1, 1, 3][i]) < 1e-6));
  assert.equal(v.getFloat32(76, true), -1, 'qfac: the affine flips handedness');
  for (let r = 0; r < 3; r++) for (let c = 0; c < 4; c++) assert.ok(Math.abs(v.getFloat32(280 + 16 * r + 4 * c, true) - affine[r][c]) < 1e-5);
  assert.deepEqual(bytes.subarray(352), data);
  assert.equal(bytes.length, 352 + 105);
});

test('the qform gives the same affine as the sform', async () => {
  const affine = obliqueAffine();
  const q = affineToQuaternion(affine);
  close(quaternionToAffine(q), affine, 1e-9, 'qform');
  // read it back through the qform alone
  const bytes = writeNifti({ dims, affine, data });
  new DataView(bytes.buffer).setInt16(254, 0, true);
  const read = await readNifti(bytes);
  assert.equal(read.sformCode, 0);
  close(read.affine, affine, 1e-5, 'read qform');
  const sheared = affine.map((r) => [...r]);
  sheared[0][1] += 0.3;
  assert.equal(affineToQuaternion(sheared), null, 'a sheared affine has no qform');
});

test('gzip round trip through node zlib and the reader', async () => {
  const affine = [[-1.5, 0, 0, 90], [0, 1.5, 0, -126], [0, 0, 1.5, -72], [0, 0, 0, 1]];
  const raw = writeNifti({ dims, affine, data });
  const gz = await gzip(raw);
  assert.equal(gz[0], 0x1f);
  assert.deepEqual(new Uint8Array(gunzipSync(gz)), raw);
  const read = await readNifti(gz);
  assert.deepEqual(read.dims, dims);
  assert.equal(read.datatype, 2);
  close(read.affine, affine, 1e-6, 'sform');
  assert.deepEqual(read.data, data);
});

test('the reader scales values and refuses what is not NIfTI', async () => {
  const bytes = writeNifti({ dims, affine: obliqueAffine(), data });
  new DataView(bytes.buffer).setFloat32(112, 2, true);
  const read = await readNifti(bytes);
  assert.equal(read.data[1], 74);
  await assert.rejects(readNifti(new Uint8Array(400)), /not a NIfTI-1/);
  assert.throws(() => writeNifti({ dims, affine: obliqueAffine(), data: new Uint8Array(3) }), /do not fill/);
});

test('a multi-member gzip file (the server\'s parallel blocks) is read whole', async () => {
  const dims = [40, 30, 20];
  const data = new Uint8Array(dims[0] * dims[1] * dims[2]).map((_, i) => (i * 7) % 3 === 0 ? 1 : 0);
  const file = writeNifti({ dims, affine: obliqueAffine(), data });
  // The header alone, then the voxels in 7,000-byte blocks: one member each.
  const cuts = [0, 352];
  for (let at = 352 + 7000; at < file.length; at += 7000) cuts.push(at);
  cuts.push(file.length);
  const members = cuts.slice(1).map((end, i) => gzipSync(file.subarray(cuts[i], end)));
  const joined = new Uint8Array(members.reduce((n, m) => n + m.length, 0));
  members.reduce((at, m) => (joined.set(m, at), at + m.length), 0);
  assert.ok(members.length > 3, `${members.length} members`);
  assert.deepEqual(await maybeGunzip(joined), file);
  const back = await readNifti(joined);
  assert.deepEqual(back.dims, dims);
  assert.deepEqual(Array.from(back.data), Array.from(data));
  // A single member and plain bytes still read as before.
  assert.deepEqual(await maybeGunzip(gzipSync(file)), file);
  assert.deepEqual(await maybeGunzip(file), file);
});
