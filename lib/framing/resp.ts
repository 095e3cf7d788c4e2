/**
 * `resp` (Redis): the framer lives in `resp/` (command table, request scanner, reply scanner,
 * framer); this file keeps the import path.
 */
export * from './resp/framer.js'
