/**
 * Where a call runs, the CPU or a CUDA device, for every op (forward, backward, step):
 *
 *   - device tensors run on their device; tensors on two devices are refused;
 *   - 'cpu' runs on the CPU and refuses device tensors;
 *   - 'cuda' / 'cuda:N' runs on that device, whether or not the CUDA path supports the call (the
 *     addon then rejects with ERR_SSD_UNSUPPORTED);
 *   - 'auto' with host tensors runs on CUDA when it is available and the addon's cudaSupports()
 *     says the CUDA path implements the call, else on the CPU; a step stays on the CPU (shipping
 *     a host state to a GPU and back costs more than stepping it in place), and so does a sync
 *     call (ssdSync() and its kin), since CUDA calls are asynchronous.
 *
 * Refusals are SsdErrors with code ERR_SSD_DEVICE.
 */
import { SsdError } from './errors';
import { native, type CudaQuery, type NativeAddon, type NativeBackends } from './native';
import type { Tensor } from './tensor';

export type Op = 'forward' | 'backward' | 'step';

export type Placement = { kind: 'cpu' } | { kind: 'cuda'; device: number };

export interface PlacementRequest {
  op: Op;
  /** options.device, validated */
  device: { kind: 'auto' | 'cpu' | 'cuda'; index: number };
  /** Every tensor of the call, with its name in messages ('inputs.x', 'grads.dy', 'state', ...). */
  tensors: readonly [string, Tensor][];
  /** A call on the calling thread (ssdSync(), ssdBackwardSync(), ssdStepSync()). */
  sync: boolean;
  /** What cudaSupports() is asked about the call; built only when it is asked. */
  query: () => CudaQuery;
}

/** What placement reads from the addon; tests pass their own. */
export type PlacementAddon = Pick<NativeAddon, 'backends' | 'cudaSupports'>;

/** What differs between the ops: the function names in messages, and what 'auto' does with host tensors. */
const OPS: Record<Op, { syncName: string; asyncName: string; autoHostMayUseCuda: boolean; unavailable: string; autoNamesTensor: boolean }> = {
  forward: { syncName: 'ssdSync()', asyncName: 'ssd()', autoHostMayUseCuda: true, unavailable: 'is not available', autoNamesTensor: false },
  backward: { syncName: 'ssdBackwardSync()', asyncName: 'ssdBackward()', autoHostMayUseCuda: true, unavailable: 'cannot run the backward: CUDA is not available', autoNamesTensor: true },
  step: { syncName: 'ssdStepSync()', asyncName: 'ssdStep()', autoHostMayUseCuda: false, unavailable: 'is not available', autoNamesTensor: true },
};

/** Decides where a call runs (see the module comment); throws ERR_SSD_DEVICE where it cannot run. */
export function place(request: PlacementRequest, addon: () => PlacementAddon = native): Placement {
  const spec = OPS[request.op];
  const onDevice = request.tensors.filter(([, tensor]) => tensor.location === 'cuda');
  const devices = [...new Set(onDevice.map(([, tensor]) => tensor.device as number))];
  if (devices.length > 1) {
    const where = onDevice.map(([name, tensor]) => `${name} on 'cuda:${tensor.device}'`).join(', ');
    throw new SsdError('ERR_SSD_DEVICE', `Expected every device tensor on one device but received ${where}`);
  }
  const inputDevice = devices.length === 1 ? devices[0] : undefined;
  const requested = request.device.kind;
  let label: string = requested;
  if (requested === 'cuda') label = `cuda:${request.device.index}`;
  else if (requested === 'auto' && inputDevice !== undefined) label = `auto (${spec.autoNamesTensor ? onDevice[0][0] : 'inputs'} on 'cuda:${inputDevice}')`;

  let cudaState: NativeBackends['cuda'] | undefined;
  const cudaInfo = (): NativeBackends['cuda'] => (cudaState ??= addon().backends().cuda);
  const hostAuto = requested === 'auto' && inputDevice === undefined;
  const cudaRunsHostAuto = (): boolean =>
    spec.autoHostMayUseCuda && !request.sync && cudaInfo().available && addon().cudaSupports(request.op, request.query()).ok;
  if (requested === 'cpu' || (hostAuto && !cudaRunsHostAuto())) {
    if (inputDevice !== undefined) {
      throw new SsdError(
        'ERR_SSD_DEVICE',
        `options.device '${label}' cannot read ${onDevice[0][0]}, which is on 'cuda:${inputDevice}'; use \`await tensor.toHost()\` or device 'cuda'`,
      );
    }
    return { kind: 'cpu' };
  }
  const device = requested === 'cuda' ? request.device.index : (inputDevice ?? 0);
  const cuda = cudaInfo();
  if (!cuda.available) throw new SsdError('ERR_SSD_DEVICE', `options.device '${label}' ${spec.unavailable}: ${cuda.reason}`);
  if (device >= cuda.devices) {
    throw new SsdError('ERR_SSD_DEVICE', `options.device '${label}' is not available: this machine has ${cuda.devices} CUDA device(s)`);
  }
  if (inputDevice !== undefined && inputDevice !== device) {
    throw new SsdError('ERR_SSD_DEVICE', `options.device 'cuda:${device}' cannot read ${onDevice[0][0]}, which is on 'cuda:${inputDevice}'`);
  }
  if (request.sync) {
    throw new SsdError('ERR_SSD_DEVICE', `options.device '${label}' is not available to ${spec.syncName}: CUDA calls are asynchronous, use ${spec.asyncName}`);
  }
  return { kind: 'cuda', device };
}
