"""The few HTTP calls the click benchmarks make to the gateway (bench_dextr3d.py,
bench_deepgrow.py): a multipart form as the AIAA clients build it, a call that stops the
benchmark on any answer but 200, and the params part of a multipart answer."""
import http.client
import json

LIMIT = "----------lImIt_of_THE_fIle_eW_$"


def multipart(fields, files):
    """A multipart/form-data body: text `fields` {name: value}, `files` {name: (filename, bytes)}."""
    body = b""
    for k, v in fields.items():
        body += f'--{LIMIT}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
    for k, (name, data) in files.items():
        body += (f'--{LIMIT}\r\nContent-Disposition: form-data; name="{k}"; filename="{name}"\r\n'
                 f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + b"\r\n"
    return body + f"--{LIMIT}--\r\n\r\n".encode()


class Gateway:
    def __init__(self, address):
        host, port = address.split(":")
        self.host, self.port = host, int(port)

    def call(self, method, path, body=b""):
        c = http.client.HTTPConnection(self.host, self.port, timeout=600)
        c.request(method, path, body, {"content-type": f"multipart/form-data; boundary={LIMIT}"})
        r = c.getresponse()
        data = r.read()
        c.close()
        if r.status != 200:
            raise SystemExit(f"{method} {path}: {r.status} {data[:300]!r}")
        return data


def params_of(body):
    """The params part of a multipart answer, found the way the clients find it."""
    delim = body[: body.index(b"\r\n")]
    first = body.split(delim)[1]
    return json.loads(first[first.index(b"\r\n\r\n") + 4 : -2])
