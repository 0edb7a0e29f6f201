/** Small network clients the lab and end-to-end tests use to see what a person would: a TCP connect, an HTTP GET, a UDP exchange. */
import * as dgram from 'node:dgram';
import * as http from 'node:http';
import * as net from 'node:net';

export function tcpConnect(host: string, port: number, timeoutMs = 3000): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port });
    const t = setTimeout(() => {
      s.destroy();
      reject(new Error(`${host}:${port} timed out`));
    }, timeoutMs);
    s.once('connect', () => {
      clearTimeout(t);
      s.end();
      resolve();
    });
    s.once('error', (e) => {
      clearTimeout(t);
      reject(new Error(`${host}:${port}: ${e.message}`));
    });
  });
}

export function httpGet(host: string, port: number, hostHeader: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host, port, path: '/', headers: { Host: hostHeader }, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET http://${host}:${port} (Host ${hostHeader}) timed out`)));
    req.on('error', reject);
  });
}

/** One datagram to host:port; resolves with the first reply as text. */
export function udpExchange(host: string, port: number, message: string, timeoutMs = 3000): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket('udp4');
    const t = setTimeout(() => {
      sock.close();
      reject(new Error(`udp ${host}:${port} timed out`));
    }, timeoutMs);
    sock.on('message', (m) => {
      clearTimeout(t);
      sock.close();
      resolve(m.toString('utf8'));
    });
    sock.send(message, port, host, (e) => {
      if (e) {
        clearTimeout(t);
        sock.close();
        reject(e);
      }
    });
  });
}
