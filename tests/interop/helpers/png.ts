/**
 * A tiny PNG decoder for checking screenshots: 8-bit greyscale, grey+alpha, RGB and RGBA, not
 * interlaced (what Chromium's `page.screenshot()` writes). Chunks are CRC-checked, the IDAT
 * stream is inflated with node:zlib and each row is unfiltered (PNG spec §9: None, Sub, Up,
 * Average, Paeth). Anything else throws: a test should fail loudly, not compare garbage.
 */
import { crc32, inflateSync } from 'node:zlib'

export interface Image {
  width: number
  height: number
  /** RGBA, 4 bytes per pixel, rows top to bottom. */
  rgba: Buffer
}

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])
/** Samples per pixel by colour type (3, palette, is not handled). */
const CHANNELS: Record<number, number> = { 0: 1, 2: 3, 4: 2, 6: 4 }

export function decodePng(png: Buffer): Image {
  if (!png.subarray(0, 8).equals(SIGNATURE)) throw new Error('not a PNG: bad signature')
  let width = 0
  let height = 0
  let channels = 0
  const idat: Buffer[] = []
  for (let at = 8; at < png.length;) {
    const length = png.readUInt32BE(at)
    const type = png.toString('latin1', at + 4, at + 8)
    const data = png.subarray(at + 8, at + 8 + length)
    if (crc32(png.subarray(at + 4, at + 8 + length)) !== png.readUInt32BE(at + 8 + length))
      throw new Error(`PNG chunk ${type} at ${at}: bad CRC`)
    at += 12 + length
    if (type === 'IHDR') {
      width = data.readUInt32BE(0)
      height = data.readUInt32BE(4)
      const [depth, colour, , , interlace] = data.subarray(8, 13)
      channels = CHANNELS[colour!] ?? 0
      if (depth !== 8 || channels === 0 || interlace !== 0)
        throw new Error(`PNG: depth ${depth}, colour type ${colour}, interlace ${interlace} not handled`)
    } else if (type === 'IDAT') idat.push(data)
    else if (type === 'IEND') break
  }
  if (width === 0 || height === 0) throw new Error('PNG: no IHDR')

  const raw = inflateSync(Buffer.concat(idat))
  const stride = width * channels
  if (raw.length !== height * (stride + 1))
    throw new Error(`PNG: ${raw.length} bytes of image data, expected ${height * (stride + 1)}`)
  const pixels = Buffer.alloc(height * stride)
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)]!
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1))
    const out = y * stride
    for (let i = 0; i < stride; i++) {
      const a = i >= channels ? pixels[out + i - channels]! : 0 // left
      const b = y > 0 ? pixels[out - stride + i]! : 0 // above
      const c = y > 0 && i >= channels ? pixels[out - stride + i - channels]! : 0 // above left
      pixels[out + i] = (line[i]! + predict(filter, a, b, c, y)) & 0xff
    }
  }

  const rgba = Buffer.alloc(width * height * 4)
  for (let p = 0; p < width * height; p++) {
    const s = p * channels
    const grey = channels < 3
    rgba[p * 4] = pixels[s]!
    rgba[p * 4 + 1] = grey ? pixels[s]! : pixels[s + 1]!
    rgba[p * 4 + 2] = grey ? pixels[s]! : pixels[s + 2]!
    rgba[p * 4 + 3] = channels === 4 ? pixels[s + 3]! : channels === 2 ? pixels[s + 1]! : 255
  }
  return { width, height, rgba }
}

function predict(filter: number, a: number, b: number, c: number, y: number): number {
  switch (filter) {
    case 0:
      return 0
    case 1:
      return a
    case 2:
      return b
    case 3:
      return (a + b) >> 1
    case 4: {
      const p = a + b - c
      const pa = Math.abs(p - a)
      const pb = Math.abs(p - b)
      const pc = Math.abs(p - c)
      return pa <= pb && pa <= pc ? a : pb <= pc ? b : c
    }
    default:
      throw new Error(`PNG row ${y}: unknown filter ${filter}`)
  }
}

/** `#rrggbb` as [r, g, b]. */
export function hex(colour: string): [number, number, number] {
  const n = Number.parseInt(colour.replace(/^#/, ''), 16)
  return [(n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff]
}

/** How many pixels are within `tolerance` (per channel) of `colour`. */
export function countColour(image: Image, colour: string, tolerance = 2): number {
  const [r, g, b] = hex(colour)
  let n = 0
  for (let i = 0; i < image.rgba.length; i += 4) {
    if (
      Math.abs(image.rgba[i]! - r) <= tolerance &&
      Math.abs(image.rgba[i + 1]! - g) <= tolerance &&
      Math.abs(image.rgba[i + 2]! - b) <= tolerance
    )
      n++
  }
  return n
}

/** Distinct RGB colours in the image. */
export function distinctColours(image: Image): number {
  const seen = new Set<number>()
  for (let i = 0; i < image.rgba.length; i += 4)
    seen.add((image.rgba[i]! << 16) | (image.rgba[i + 1]! << 8) | image.rgba[i + 2]!)
  return seen.size
}
