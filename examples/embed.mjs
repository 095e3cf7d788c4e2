// Embedding Baton as a library: two echo backends, a balancer in front, one client, a look at the
// connection table and the counters, then a graceful close.
//
//   npm run build && node examples/embed.mjs
import net from 'node:net'
import { createBalancer } from 'baton-lb'

const backends = [net.createServer((s) => s.pipe(s)), net.createServer((s) => s.pipe(s))]
for (const b of backends) await new Promise((resolve) => b.listen(0, '127.0.0.1', resolve))

const balancer = createBalancer({
  listeners: [
    {
      name: 'echo',
      listen: '127.0.0.1:0',
      balance: 'least-connections',
      backends: backends.map((b) => ({ host: '127.0.0.1', port: b.address().port })),
      connectTimeout: '2s',
    },
  ],
  log: { level: 'warn' },
})
balancer.on('sessionClose', (e) => {
  console.log(`session ${e.id} via ${e.backends.join(' -> ')}: ${e.bytesFromClient} B in, ${e.outcome}`)
})
await balancer.listen()
const { port } = balancer.address('echo')

const client = net.connect(port, '127.0.0.1')
await new Promise((resolve) => client.once('connect', resolve))
console.log('live sessions:', balancer.sessions().length)
client.end('hello through Baton\n')
client.pipe(process.stdout)
await new Promise((resolve) => client.once('close', resolve))

await balancer.close(1000)
console.log('sessions total:', balancer.counters().accepted)
for (const b of backends) b.close()
