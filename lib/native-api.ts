/**
 * `require('ssd-kernels/native')`: what other native addons need to call the kernels from C or C++.
 *
 *   includeDir      the folder of ssd_kernels.h, for a build's include path (binding.gyp:
 *                   "include_dirs": ["<!(node -p \"require('ssd-kernels/native').includeDir\")"]);
 *                   reading it does not load the addon
 *   getNativeApi()  a napi External holding the `const SsdApi*` function table, type-tagged with
 *                   SSD_KERNELS_NAPI_TYPE_TAG; pass it to your addon, which checks the tag and the
 *                   table's abi_version (see include/ssd_kernels.h)
 *   addonPath()     the file the addon was loaded from
 */
import * as path from 'node:path';
import { native, nativePath, packageRoot } from './native';

declare const nativeApiBrand: unique symbol;

/** An opaque napi External holding a `const SsdApi*`; only native code can read it. */
export type NativeApi = { readonly [nativeApiBrand]: true };

/** The folder that holds ssd_kernels.h. */
export const includeDir: string = path.join(packageRoot(), 'include');

/** The C function table as a type-tagged napi External (loads the addon). */
export function getNativeApi(): NativeApi {
  return native().getNativeApi() as NativeApi;
}

/** The file the addon was loaded from (loads the addon). */
export function addonPath(): string {
  return nativePath();
}
