/** A connection-table entry with no session behind it, for tests of the table and what reads it. */
import type { Socket } from 'node:net'
import type { TableEntry } from '../../lib/table.js'

export function bareEntry(id: number, listener: string, fields: Partial<TableEntry> = {}): TableEntry {
  return {
    id,
    listener,
    client: {} as Socket,
    bytesFromClient: 0,
    bytesToClient: 0,
    remote: '127.0.0.1:9',
    startedAt: Date.now(),
    server: undefined,
    backend: undefined,
    history: [],
    state: 'connecting',
    creditedFromClient: 0,
    creditedToClient: 0,
    ...fields,
  }
}
