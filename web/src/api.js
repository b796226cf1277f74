// The gateway client: every call of the page goes through here, so each one carries the
// bearer token when the server wants one, and each failure becomes one sentence for the
// annotator (the status's meaning plus the server's own message). Uploads go through
// XMLHttpRequest, the one browser API that reports upload progress.

const TOKEN_KEY = 'aiaa.token';

/** What a status means to the annotator; the server's own message follows it. */
const STATUS_WORDS = {
  400: 'the server refused the input',
  401: 'the API key is needed (or no longer valid): enter it again',
  403: 'the API key is needed (or no longer valid): enter it again',
  404: 'not found (the model, image or label is missing)',
  413: 'the file is too large for the server',
  429: 'the server is busy with another task',
  440: 'the session expired',
  503: 'server busy, try again',
};

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
  get needsKey() {
    return this.status === 401 || this.status === 403;
  }
}

/** The server's words from its JSON error body: `error.message` (list or text) and `detail`. */
export function serverMessage(text) {
  try {
    const body = JSON.parse(text);
    const said = [];
    const msg = body?.error?.message;
    if (Array.isArray(msg)) said.push(...msg.map(String));
    else if (msg) said.push(String(msg));
    const detail = body?.detail;
    const details = Array.isArray(detail) ? detail : detail ? [detail] : [];
    for (const d of details) {
      const s = typeof d === 'string' ? d : d?.msg ?? JSON.stringify(d);
      if (!said.includes(s)) said.push(s);
    }
    if (!said.length && typeof body?.error_description === 'string') said.push(body.error_description);
    return said.join('; ');
  } catch {
    return text.trim().slice(0, 300);
  }
}

/** The error for a failed answer: status words, then the server's message. */
export function errorFor(status, text, what) {
  const words = STATUS_WORDS[status] ?? (status === 0 ? 'the server cannot be reached' : `the server failed (HTTP ${status})`);
  const said = text ? serverMessage(text) : '';
  return new ApiError(status, `${what}: ${words}${said ? ` — ${said}` : ''}`);
}

export class Api {
  constructor(base = '') {
    this.base = base;
    this.token = sessionStorage.getItem(TOKEN_KEY);
    this.onUnauthorized = () => {};
  }

  setToken(token) {
    this.token = token;
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  }

  headers() {
    return this.token ? { Authorization: `Bearer ${this.token}` } : {};
  }

  fail(status, text, what) {
    const err = errorFor(status, text, what);
    if (err.needsKey) this.onUnauthorized(err);
    return err;
  }

  /** fetch with the token; throws ApiError (in words) unless the answer is 200. */
  async call(method, path, { body, what = `${method} ${path}` } = {}) {
    let res;
    try {
      res = await fetch(this.base + path, { method, body, headers: this.headers() });
    } catch (e) {
      throw new ApiError(0, `${what}: the server cannot be reached (${e.message})`);
    }
    if (res.status !== 200) throw this.fail(res.status, await res.text(), what);
    return res;
  }

  async json(method, path, opts) {
    return (await this.call(method, path, opts)).json();
  }

  /** `GET /auth/`: whether the server wants a key. */
  async authEnabled() {
    return (await this.json('GET', '/auth/', { what: 'checking whether a key is needed' })).enabled === true;
  }

  /** OAuth2 password grant: the key is the password; the token is kept for the tab. */
  async login(key) {
    const body = new URLSearchParams({ username: '', password: key, grant_type: 'password' });
    const res = await fetch(`${this.base}/auth/token`, { method: 'POST', body });
    const text = await res.text();
    if (res.status !== 200) throw errorFor(res.status === 400 ? 401 : res.status, text, 'login');
    this.setToken(JSON.parse(text).access_token);
  }

  models() {
    return this.json('GET', '/v1/models', { what: 'listing the models' });
  }

  /** The datastore's images and their labels: {id: {image, labels: {tag: {...}}}}. */
  async datastore() {
    return (await this.json('GET', '/datastore/?output=all', { what: 'listing the datastore' })).objects ?? {};
  }

  async imageBytes(id) {
    const res = await this.call('GET', `/datastore/image?image=${encodeURIComponent(id)}`, { what: `downloading image ${id}` });
    return res.arrayBuffer();
  }

  async labelBytes(id, tag = 'final') {
    const res = await this.call('GET', `/datastore/label?label=${encodeURIComponent(id)}&tag=${encodeURIComponent(tag)}`, { what: `downloading the ${tag} label of ${id}` });
    return new Uint8Array(await res.arrayBuffer());
  }

  /** `PUT /session/`: the image held by the server for the model calls; answers session_id. */
  async session(bytes, filename) {
    const form = new FormData();
    form.append('image', new Blob([bytes]), filename);
    return (await this.json('PUT', '/session/', { body: form, what: 'starting a session' })).session_id;
  }

  /**
   * A model call on the session: `segmentation` (params `{}`), `dextr3d` (`{points}`) or
   * `deepgrow` (`{foreground, background}`). The answer is multipart: the params the server
   * echoes (points, crop, its stage `latencies`) and the mask on the image's grid.
   */
  async model(route, model, sessionId, params) {
    const form = new FormData();
    form.append('params', JSON.stringify(params));
    const q = `model=${encodeURIComponent(model)}&session_id=${encodeURIComponent(sessionId)}`;
    const res = await this.call('POST', `/v1/${route}?${q}`, { body: form, what: `running ${model}` });
    return { bytes: new Uint8Array(await res.arrayBuffer()), contentType: res.headers.get('content-type') };
  }

  /** `PUT /datastore/label?image=&tag=`: the label file (on the image's grid) and `params`. */
  saveLabel(id, bytes, onProgress, tag = 'final') {
    const form = new FormData();
    form.append('label', new Blob([bytes], { type: 'application/octet-stream' }), `${id}.nii.gz`);
    form.append('params', '{}');
    return this.upload('PUT', `/datastore/label?image=${encodeURIComponent(id)}&tag=${encodeURIComponent(tag)}`, form, onProgress, `saving the label of ${id}`);
  }

  /** `PUT /datastore/image?image=`: a local volume, its name keeping the real extension. */
  uploadImage(id, file, onProgress) {
    const form = new FormData();
    form.append('file', file, file.name);
    form.append('params', '{}');
    return this.upload('PUT', `/datastore/image?image=${encodeURIComponent(id)}`, form, onProgress, `uploading ${file.name}`);
  }

  /** `PUT /datastore/image?image=` with a DICOM series' files: the server assembles one volume. */
  uploadSeries(id, files, onProgress) {
    const form = new FormData();
    for (const file of files) form.append('file', file, file.name);
    form.append('params', '{}');
    return this.upload('PUT', `/datastore/image?image=${encodeURIComponent(id)}`, form, onProgress, `uploading the DICOM series ${id}`);
  }

  /** XMLHttpRequest upload reporting progress (0..1) while the body goes out. */
  upload(method, path, form, onProgress, what) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open(method, this.base + path);
      for (const [k, v] of Object.entries(this.headers())) xhr.setRequestHeader(k, v);
      xhr.upload.onprogress = (e) => {
        if (e.lengthComputable) onProgress?.(e.loaded / e.total);
      };
      xhr.onload = () => {
        if (xhr.status === 200) resolve(xhr.responseText ? JSON.parse(xhr.responseText) : {});
        else reject(this.fail(xhr.status, xhr.responseText, what));
      };
      xhr.onerror = () => reject(new ApiError(0, `${what}: the server cannot be reached`));
      xhr.send(form);
    });
  }
}

/** The datastore id of a local file: its name without the extension, kept to the allowed characters. */
export function imageIdOf(filename) {
  const base = filename.replace(/\.(nii\.gz|nii|nrrd|mha)$/i, '');
  const id = base.replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^[._]+/, '').slice(0, 128);
  if (!id) throw new Error(`no usable image id in the file name ${JSON.stringify(filename)}`);
  return id;
}

/** The formats the page uploads: single-file volumes that niivue and the server both read. */
export const IMAGE_EXTENSIONS = ['.nii', '.nii.gz', '.nrrd', '.mha'];

export function extensionOf(filename) {
  return IMAGE_EXTENSIONS.filter((e) => filename.toLowerCase().endsWith(e)).sort((a, b) => b.length - a.length)[0];
}
