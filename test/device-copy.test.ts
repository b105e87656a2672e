/**
 * Host ↔ device copies in pieces (lib/device-copy.ts), checked without a GPU through a stand-in for
 * the addon's cudaCopy: a host buffer of 4 GiB or more (where Node.js cannot make one byte view of
 * the whole buffer) is copied in byte views of at most COPY_PIECE_BYTES that cover it exactly, in
 * order, at the matching device offsets. The GPU suite copies such a tensor there and back.
 */
import { COPY_PIECE_BYTES, copyHostDevice, copyPieces } from '../lib/device-copy';

interface Call {
  ptr: bigint;
  buffer: ArrayBufferLike;
  byteOffset: number;
  byteLength: number;
  toDevice: boolean;
}

function recorder(fail?: (i: number) => boolean): { calls: Call[]; addon: { cudaCopy: (d: number, p: bigint, h: ArrayBufferView, t: boolean) => Promise<void> } } {
  const calls: Call[] = [];
  const addon = {
    cudaCopy: (_device: number, ptr: bigint, host: ArrayBufferView, toDevice: boolean): Promise<void> => {
      calls.push({ ptr, buffer: host.buffer, byteOffset: host.byteOffset, byteLength: host.byteLength, toDevice });
      const i = calls.length - 1;
      return fail?.(i) ? new Promise((_, reject) => setTimeout(() => reject(new Error(`piece ${i} failed`)), 5)) : new Promise((resolve) => setTimeout(resolve, 20 - i));
    },
  };
  return { calls, addon };
}

describe('host and device copies in pieces', () => {
  test('the pieces cover the bytes in order', () => {
    expect(copyPieces(0)).toEqual([]);
    expect(copyPieces(5, 2)).toEqual([{ offset: 0, length: 2 }, { offset: 2, length: 2 }, { offset: 4, length: 1 }]);
    expect(copyPieces(COPY_PIECE_BYTES)).toEqual([{ offset: 0, length: COPY_PIECE_BYTES }]);
    expect(copyPieces(COPY_PIECE_BYTES + 1)).toEqual([{ offset: 0, length: COPY_PIECE_BYTES }, { offset: COPY_PIECE_BYTES, length: 1 }]);
  });

  test('a view past 4 GiB of a host buffer goes in pieces at the matching device offsets', async () => {
    // 4 GiB + 6 bytes of zero pages, never written; a view from its second element
    const data = new Uint16Array(2 ** 31 + 3);
    const view = data.subarray(1);
    const { calls, addon } = recorder();
    await copyHostDevice(addon, 0, 4096n, view, true);
    const expected = copyPieces(view.byteLength);
    expect(expected).toHaveLength(5);
    expect(calls).toHaveLength(5);
    calls.forEach((c, i) => {
      expect(c.buffer).toBe(data.buffer);
      expect(c.toDevice).toBe(true);
      expect(c.byteOffset).toBe(2 + expected[i].offset);
      expect(c.byteLength).toBe(expected[i].length);
      expect(c.ptr).toBe(4096n + BigInt(expected[i].offset));
    });
    expect(calls.reduce((s, c) => s + c.byteLength, 0)).toBe(view.byteLength);
  });

  test('a small copy is one piece, in either direction', async () => {
    const view = new Float32Array(10);
    const { calls, addon } = recorder();
    await copyHostDevice(addon, 0, 64n, view, false);
    expect(calls).toEqual([{ ptr: 64n, buffer: view.buffer, byteOffset: 0, byteLength: 40, toDevice: false }]);
    const none = recorder();
    await copyHostDevice(none.addon, 0, 64n, new Float32Array(0), true);
    expect(none.calls).toHaveLength(0);
  });

  test('a failed piece rejects the copy once every piece has settled', async () => {
    const { calls, addon } = recorder((i) => i === 1);
    let settledPieces = 0;
    const wrapped = {
      cudaCopy: (d: number, p: bigint, h: ArrayBufferView, t: boolean): Promise<void> => {
        const r = addon.cudaCopy(d, p, h, t);
        void r.then(() => settledPieces++, () => settledPieces++);
        return r;
      },
    };
    await expect(copyHostDevice(wrapped, 0, 0n, new Uint8Array(10), true, 4)).rejects.toThrow('piece 1 failed');
    expect(calls).toHaveLength(3);
    expect(settledPieces).toBe(3);
  });
});
