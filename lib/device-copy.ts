/**
 * Copies between host memory and device memory of any size the dims limit allows (lib/rules.ts:
 * 2^32 − 1 elements, 16 GiB of float32), in pieces: a typed array over one whole buffer of 4 GiB
 * or more cannot be made (a Uint8Array holds fewer than 2^32 elements), so each piece is a byte
 * view of at most COPY_PIECE_BYTES. The pieces are queued in order on the device's stream.
 */
import type { NativeAddon } from './native';

/** The most bytes one cudaCopy is handed (1 GiB: a byte view of any piece is far below the limit). */
export const COPY_PIECE_BYTES = 2 ** 30;

/** The byte ranges [offset, offset + length) that cover `bytes` bytes in pieces of at most `piece`. */
export function copyPieces(bytes: number, piece: number = COPY_PIECE_BYTES): { offset: number; length: number }[] {
  const pieces: { offset: number; length: number }[] = [];
  for (let offset = 0; offset < bytes; offset += piece) pieces.push({ offset, length: Math.min(piece, bytes - offset) });
  return pieces;
}

/**
 * Queues copies of `view`'s bytes to (toDevice) or from device memory at `ptr`, piece by piece
 * (`name`, the host array's name in messages: a download into an array detached meanwhile rejects
 * with ERR_SSD_DETACHED naming it). Every piece's host side is read (staged) before this returns
 * its Promise. Settles when every piece has: it rejects with the first failure only after the
 * others settled, so that no copy still reads or writes the memory when the caller hears of it.
 */
export async function copyHostDevice(
  addon: Pick<NativeAddon, 'cudaCopy'>,
  device: number,
  ptr: bigint,
  view: ArrayBufferView,
  toDevice: boolean,
  piece: number = COPY_PIECE_BYTES,
  name?: string,
): Promise<void> {
  const copies = copyPieces(view.byteLength, piece).map(({ offset, length }) =>
    addon.cudaCopy(device, ptr + BigInt(offset), new Uint8Array(view.buffer, view.byteOffset + offset, length), toDevice, name),
  );
  if (copies.length === 1) return copies[0];
  const settled = await Promise.allSettled(copies);
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}
