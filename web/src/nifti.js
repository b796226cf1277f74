// NIfTI-1 single-file (.nii / .nii.gz) writing and reading of labels and masks. Writing: one
// byte a voxel (uint8) with the image's dims and affine as the sform (sform_code 1) and, when
// the affine is a rotation times spacing, the same as a qform, so readers that prefer either
// agree; pixdim from the affine. Reading: what the server answers (uint8/int/float masks, the
// sform or qform geometry). Gzip through the platform's CompressionStream (browsers, node 18+).
import { Gunzip } from 'fflate';
import { spacing } from './geometry.js';

const HEADER = 348;
const OFFSET = 352; // header + the 4 "no extension" bytes
const DTYPES = {
  2: Uint8Array, 4: Int16Array, 8: Int32Array, 16: Float32Array, 64: Float64Array,
  256: Int8Array, 512: Uint16Array, 768: Uint32Array,
};

/** Quaternion (b, c, d), qfac and offsets of an affine whose 3x3 part is rotation x spacing, or null. */
export function affineToQuaternion(affine) {
  const sp = spacing(affine);
  const r = [0, 1, 2].map((row) => [0, 1, 2].map((c) => affine[row][c] / sp[c]));
  let det = r[0][0] * (r[1][1] * r[2][2] - r[1][2] * r[2][1])
    - r[0][1] * (r[1][0] * r[2][2] - r[1][2] * r[2][0])
    + r[0][2] * (r[1][0] * r[2][1] - r[1][1] * r[2][0]);
  const qfac = det < 0 ? -1 : 1;
  if (qfac < 0) for (const row of r) row[2] = -row[2]; // NIfTI's qfac flips the third column
  det *= qfac;
  // Orthonormal columns only: a sheared affine has no qform.
  for (let a = 0; a < 3; a++) {
    for (let b = a; b < 3; b++) {
      const dot = r[0][a] * r[0][b] + r[1][a] * r[1][b] + r[2][a] * r[2][b];
      if (Math.abs(dot - (a === b ? 1 : 0)) > 1e-4) return null;
    }
  }
  // Rotation matrix -> unit quaternion with a >= 0 (nifti1_io's nifti_mat44_to_quatern).
  let a = r[0][0] + r[1][1] + r[2][2] + 1;
  let b;
  let c;
  let d;
  if (a > 0.5) {
    a = 0.5 * Math.sqrt(a);
    b = (0.25 * (r[2][1] - r[1][2])) / a;
    c = (0.25 * (r[0][2] - r[2][0])) / a;
    d = (0.25 * (r[1][0] - r[0][1])) / a;
  } else {
    const xd = 1 + r[0][0] - (r[1][1] + r[2][2]);
    const yd = 1 + r[1][1] - (r[0][0] + r[2][2]);
    const zd = 1 + r[2][2] - (r[0][0] + r[1][1]);
    if (xd > 1) {
      b = 0.5 * Math.sqrt(xd); c = (0.25 * (r[0][1] + r[1][0])) / b;
      d = (0.25 * (r[0][2] + r[2][0])) / b; a = (0.25 * (r[2][1] - r[1][2])) / b;
    } else if (yd > 1) {
      c = 0.5 * Math.sqrt(yd); b = (0.25 * (r[0][1] + r[1][0])) / c;
      d = (0.25 * (r[1][2] + r[2][1])) / c; a = (0.25 * (r[0][2] - r[2][0])) / c;
    } else {
      d = 0.5 * Math.sqrt(zd); b = (0.25 * (r[0][2] + r[2][0])) / d;
      c = (0.25 * (r[1][2] + r[2][1])) / d; a = (0.25 * (r[1][0] - r[0][1])) / d;
    }
    if (a < 0) { b = -b; c = -c; d = -d; }
  }
  return { b, c, d, qfac, spacing: sp, offset: [affine[0][3], affine[1][3], affine[2][3]] };
}

/** The affine of a qform (NIfTI-1's method 2). */
export function quaternionToAffine({ b, c, d, qfac, spacing: [dx, dy, dz], offset }) {
  const a = Math.sqrt(Math.max(0, 1 - (b * b + c * c + d * d)));
  const r = [
    [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
    [2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)],
    [2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - c * c - b * b],
  ];
  const scale = [dx, dy, dz * (qfac < 0 ? -1 : 1)];
  return [
    ...[0, 1, 2].map((row) => [...[0, 1, 2].map((col) => r[row][col] * scale[col]), offset[row]]),
    [0, 0, 0, 1],
  ];
}

/** An uncompressed NIfTI-1 file of uint8 voxels: {dims: [nx, ny, nz], affine, data}. */
export function writeNifti({ dims, affine, data }) {
  const n = dims[0] * dims[1] * dims[2];
  if (data.length !== n) throw new Error(`${data.length} voxels do not fill ${dims.join('x')}`);
  const buf = new ArrayBuffer(OFFSET + n);
  const v = new DataView(buf);
  v.setInt32(0, HEADER, true);
  v.setInt8(38, 'r'.charCodeAt(0)); // regular: as nibabel writes
  [3, ...dims, 1, 1, 1, 1].forEach((d, i) => v.setInt16(40 + 2 * i, d, true));
  v.setInt16(70, 2, true); // DT_UINT8
  v.setInt16(72, 8, true); // bitpix
  const q = affineToQuaternion(affine);
  const sp = spacing(affine);
  [q ? q.qfac : 1, ...sp, 1, 1, 1, 1].forEach((p, i) => v.setFloat32(76 + 4 * i, p, true));
  v.setFloat32(108, OFFSET, true); // vox_offset
  v.setFloat32(112, 1, true); // scl_slope
  v.setUint8(123, 2); // xyzt_units: mm
  v.setFloat32(128, 255, true); // cal_max: label values fit a byte
  const descrip = 'aiaa web annotation';
  for (let i = 0; i < descrip.length; i++) v.setUint8(148 + i, descrip.charCodeAt(i));
  if (q) {
    v.setInt16(252, 1, true); // qform_code: scanner
    [q.b, q.c, q.d, ...q.offset].forEach((x, i) => v.setFloat32(256 + 4 * i, x, true));
  }
  v.setInt16(254, 1, true); // sform_code: scanner
  for (let r = 0; r < 3; r++) for (let c = 0; c < 4; c++) v.setFloat32(280 + 16 * r + 4 * c, affine[r][c], true);
  'n+1\0'.split('').forEach((ch, i) => v.setUint8(344 + i, ch.charCodeAt(0)));
  new Uint8Array(buf, OFFSET).set(data);
  return new Uint8Array(buf);
}

async function pipe(bytes, stream) {
  const out = new Blob([bytes]).stream().pipeThrough(stream);
  return new Uint8Array(await new Response(out).arrayBuffer());
}

/** Gzip bytes (the .nii.gz the server and other tools expect). */
export function gzip(bytes) {
  return pipe(bytes, new CompressionStream('gzip'));
}

/**
 * Gunzip bytes when they start with gzip's magic; others are returned as they are. Every
 * member of a multi-member file is read: the server compresses answers in parallel blocks,
 * one gzip member each (as pigz and bgzip do), which nibabel, SimpleITK and zlib read as one
 * stream but the browser's DecompressionStream refuses after the first member.
 */
export async function maybeGunzip(bytes) {
  if (!(bytes[0] === 0x1f && bytes[1] === 0x8b)) return bytes;
  const parts = [];
  let total = 0;
  const gunzip = new Gunzip((chunk) => {
    parts.push(chunk);
    total += chunk.length;
  });
  gunzip.push(bytes, true);
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** A NIfTI-1 file's geometry and voxels: {dims, affine, datatype, data (typed array, scaled values)}. */
export async function readNifti(input) {
  const bytes = await maybeGunzip(input instanceof Uint8Array ? input : new Uint8Array(input));
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let le = true;
  if (v.getInt32(0, true) !== HEADER) {
    if (v.getInt32(0, false) !== HEADER) throw new Error('not a NIfTI-1 file');
    le = false;
  }
  const ndim = v.getInt16(40, le);
  const dims = [1, 2, 3].map((i) => (i <= ndim ? v.getInt16(40 + 2 * i, le) : 1));
  const datatype = v.getInt16(70, le);
  const Type = DTYPES[datatype];
  if (!Type) throw new Error(`NIfTI datatype ${datatype} is not read here`);
  const pixdim = [0, 1, 2, 3].map((i) => v.getFloat32(76 + 4 * i, le));
  const offset = Math.max(HEADER, Math.round(v.getFloat32(108, le)));
  let slope = v.getFloat32(112, le);
  const inter = v.getFloat32(116, le);
  const qformCode = v.getInt16(252, le);
  const sformCode = v.getInt16(254, le);
  let affine;
  if (sformCode > 0) {
    affine = [0, 1, 2].map((r) => [0, 1, 2, 3].map((c) => v.getFloat32(280 + 16 * r + 4 * c, le)));
    affine.push([0, 0, 0, 1]);
  } else if (qformCode > 0) {
    const [b, c, d, ox, oy, oz] = [0, 1, 2, 3, 4, 5].map((i) => v.getFloat32(256 + 4 * i, le));
    affine = quaternionToAffine({ b, c, d, qfac: pixdim[0] < 0 ? -1 : 1, spacing: pixdim.slice(1), offset: [ox, oy, oz] });
  } else {
    affine = [[pixdim[1], 0, 0, 0], [0, pixdim[2], 0, 0], [0, 0, pixdim[3], 0], [0, 0, 0, 1]];
  }
  const n = dims[0] * dims[1] * dims[2];
  const size = n * Type.BYTES_PER_ELEMENT;
  if (bytes.byteLength < offset + size) throw new Error('the NIfTI file is shorter than its header says');
  const raw = bytes.slice(offset, offset + size); // a copy: aligned for the typed array
  const rv = new DataView(raw.buffer);
  let data = new Type(raw.buffer);
  if (!le && Type.BYTES_PER_ELEMENT > 1) {
    const get = `get${Type.name.replace('Array', '')}`;
    data = Type.from({ length: n }, (_, i) => rv[get](i * Type.BYTES_PER_ELEMENT, false));
  }
  if (!Number.isFinite(slope) || slope === 0) slope = 1;
  if (slope !== 1 || inter !== 0) data = Float32Array.from(data, (x) => x * slope + inter);
  return { dims, affine, datatype, pixdim, qformCode, sformCode, data };
}
