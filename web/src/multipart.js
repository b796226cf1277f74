// Reading the server's multipart answers (/v1/dextr3d, /v1/deepgrow: the `params` JSON part
// first, then the mask file part). Pure: the boundary comes from the Content-Type header.

/** The boundary of a `multipart/...; boundary=...` Content-Type (quoted or not). */
export function boundaryOf(contentType) {
  const m = /boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(contentType ?? '');
  if (!m) throw new Error(`the answer is not multipart (Content-Type: ${contentType || 'none'})`);
  return m[1] ?? m[2];
}

function indexOf(haystack, needle, from) {
  outer: for (let i = from; i <= haystack.length - needle.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

/** The parts: [{name, filename, headers: {lower-case name: value}, body: Uint8Array}]. */
export function parseMultipart(bytes, contentType) {
  const enc = new TextEncoder();
  const delimiter = enc.encode(`--${boundaryOf(contentType)}`);
  const parts = [];
  let at = indexOf(bytes, delimiter, 0);
  if (at < 0) throw new Error('the multipart answer has no part');
  for (;;) {
    let start = at + delimiter.length;
    if (bytes[start] === 0x2d && bytes[start + 1] === 0x2d) break; // closing "--"
    start += 2; // CRLF after the delimiter
    const next = indexOf(bytes, delimiter, start);
    if (next < 0) throw new Error('the multipart answer is cut short');
    const end = next - 2; // the CRLF before the next delimiter belongs to it
    const headEnd = indexOf(bytes, enc.encode('\r\n\r\n'), start);
    if (headEnd < 0 || headEnd > end) throw new Error('a multipart part has no header end');
    const headers = {};
    for (const line of new TextDecoder().decode(bytes.subarray(start, headEnd)).split('\r\n')) {
      const colon = line.indexOf(':');
      if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    const disposition = headers['content-disposition'] ?? '';
    parts.push({
      name: /\bname="([^"]*)"/.exec(disposition)?.[1] ?? '',
      filename: /\bfilename="([^"]*)"/.exec(disposition)?.[1],
      headers,
      body: bytes.subarray(headEnd + 4, end),
    });
    at = next;
  }
  return parts;
}

/** An interactive model's answer: its params JSON and the mask file bytes. */
export function readModelAnswer(bytes, contentType) {
  const parts = parseMultipart(bytes, contentType);
  const params = parts.find((p) => p.filename === undefined);
  const file = parts.find((p) => p.filename !== undefined);
  if (!file) throw new Error('the answer carries no mask file');
  return {
    params: params ? JSON.parse(new TextDecoder().decode(params.body) || '{}') : {},
    file: file.body,
    filename: file.filename,
  };
}
