/**
 * The connection table's entry history: every backend a session was attached to, in order, kept
 * through attach (a failover), detach and re-attach to the same backend.
 */
import type { Socket } from 'node:net'
import t from 'tap'
import type { Backend } from '../lib/backend.js'
import { ConnectionTable, snapshotOf, type TableEntry } from '../lib/table.js'
import { bareEntry } from './helpers/table.js'

function backend(name: string): Backend {
  return { name, counters: { bytesSent: 0, bytesReceived: 0 } } as unknown as Backend
}

function entry(table: ConnectionTable): TableEntry {
  return bareEntry(table.newId(), 'l')
}

t.test('history: the first backend, then each switch, never a repeat in a row', async (t) => {
  const table = new ConnectionTable()
  const e = entry(table)
  table.add(e)
  const [a, b] = [backend('a'), backend('b')]
  const server = {} as Socket
  t.same(snapshotOf(e).backends, [], 'none before the first attach')
  table.attach(e, a, server)
  t.same(snapshotOf(e).backends, ['a'])
  table.detach(e)
  table.attach(e, a, server) // a new connection to the same backend (a move between turns)
  t.same(snapshotOf(e).backends, ['a'], 'the same backend again is not a new entry')
  table.attach(e, b, server)
  table.attach(e, a, server)
  t.same(snapshotOf(e).backends, ['a', 'b', 'a'], 'every switch, in order')
  t.equal(table.get(e.id), e, 'the same entry throughout')
})
