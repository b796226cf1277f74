// Reading the server's multipart answers: params first, then the file; boundary from the header.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { boundaryOf, parseMultipart, readModelAnswer } from '../../src/multipart.js';

const enc = new TextEncoder();
function body(boundary, file) {
  const head = `--${boundary}\r\nContent-Disposition: form-data; name="params"\r\nContent-Type: application/json\r\n\r\n{"foreground":[[1,2,3]],"crop":[[0,4],[0,5],[0,6]]}\r\n`
    + `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="result.nii.gz"\r\nContent-Type: application/octet-stream\r\n\r\n`;
  const tail = `\r\n--${boundary}--\r\n`;
  const out = new Uint8Array(head.length + file.length + tail.length);
  out.set(enc.encode(head));
  out.set(file, head.length);
  out.set(enc.encode(tail), head.length + file.length);
  return out;
}

test('boundary quoted or not, odd characters kept', () => {
  assert.equal(boundaryOf('multipart/form-data; boundary=abc123'), 'abc123');
  assert.equal(boundaryOf('multipart/form-data; boundary="----lImIt_of_THE_fIle_eW_$"'), '----lImIt_of_THE_fIle_eW_$');
  assert.throws(() => boundaryOf('application/json'), /not multipart/);
});

test('params and a binary file holding CRLF and dashes', () => {
  const file = Uint8Array.from([0x1f, 0x8b, 13, 10, 45, 45, 0, 255, 13, 10]);
  const bytes = body('xYz', file);
  const parts = parseMultipart(bytes, 'multipart/form-data; boundary=xYz');
  assert.equal(parts.length, 2);
  assert.equal(parts[0].name, 'params');
  assert.equal(parts[1].filename, 'result.nii.gz');
  assert.deepEqual(parts[1].body, file);
  const answer = readModelAnswer(bytes, 'multipart/form-data; boundary=xYz');
  assert.deepEqual(answer.params.foreground, [[1, 2, 3]]);
  assert.deepEqual(answer.file, file);
});

test('a cut answer is an error', () => {
  const bytes = body('b', Uint8Array.of(1, 2, 3)).subarray(0, 120);
  assert.throws(() => parseMultipart(bytes, 'multipart/form-data; boundary=b'), /cut short/);
});
