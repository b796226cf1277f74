// The gateway client's words: error bodies and statuses to sentences, file names to ids.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { serverMessage, errorFor, imageIdOf, extensionOf } from '../../src/api.js';

test("the server's message and detail, without repeats", () => {
  const body = JSON.stringify({ error: { message: ['the label is not on the grid of its image'], type: 'bad' }, detail: 'the label is not on the grid of its image', success: false });
  assert.equal(serverMessage(body), 'the label is not on the grid of its image');
  assert.equal(serverMessage(JSON.stringify({ detail: [{ msg: 'field required' }] })), 'field required');
  assert.equal(serverMessage('plain words'), 'plain words');
});

test('statuses in words; 401 and 403 ask for the key', () => {
  assert.match(errorFor(503, '', 'running m').message, /^running m: server busy, try again$/);
  assert.match(errorFor(404, '{"error":{"message":["model x not found"]}}', 'running x').message, /not found.*model x not found/);
  assert.match(errorFor(400, '{"error":{"message":"bad file"}}', 'upload').message, /refused the input — bad file/);
  assert.equal(errorFor(401, '', 'x').needsKey, true);
  assert.equal(errorFor(403, '', 'x').needsKey, true);
  assert.equal(errorFor(500, '', 'x').needsKey, false);
});

test('image ids from file names', () => {
  assert.equal(imageIdOf('atlas.nii.gz'), 'atlas');
  assert.equal(imageIdOf('my scan (2).nrrd'), 'my_scan_2_');
  assert.equal(imageIdOf('a.b.mha'), 'a.b');
  assert.equal(imageIdOf('x'.repeat(200) + '.nii').length, 128);
  assert.throws(() => imageIdOf('.nii'), /no usable image id/);
  assert.equal(extensionOf('A.NII.GZ'), '.nii.gz');
  assert.equal(extensionOf('a.nii'), '.nii');
  assert.equal(extensionOf('a.dcm'), undefined);
});
