/**
 * One connect → `ping N` → `pong ping N` → close, against a line server that answers each line `X`
 * with `pong X` (the DNS-discovery and upgrade suites). Rejects with the error code, `TIMEOUT`
 * (10 s) or `SHORT(…)` on anything else.
 */
import net from 'node:net'

export function oneRequest(port: number, n: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port })
    let got = ''
    const timer = setTimeout(() => {
      s.destroy()
      reject(new Error('TIMEOUT'))
    }, 10_000)
    s.setEncoding('utf8')
    s.on('connect', () => s.write(`ping ${n}\n`))
    s.on('data', (d: string) => {
      got += d
      if (got.endsWith('\n')) s.end()
    })
    s.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer)
      reject(new Error(err.code ?? err.message))
    })
    s.on('close', () => {
      clearTimeout(timer)
      if (got === `pong ping ${n}\n`) resolve()
      else reject(new Error(`SHORT(${JSON.stringify(got)})`))
    })
  })
}
