/**
 * Validation of ssdBackward() arguments, done in full before anything crosses into native code: the
 * forward's inputs and options through validate(), then the gradients of the outputs (`grads`) and
 * options.out, which for the backward holds gradient tensors. Same message shape as validate.ts.
 */
import { SsdError, typeError } from './errors';
import { asTensor, type Tensor, type TensorLike, type TensorType } from './tensor';
import { OUTPUT_GRAD_TYPES } from './rules';
import {
  checkKnownKeys,
  isPlainObject,
  sameDims,
  shapeError,
  tensorArg,
  validate,
  type SsdInputs,
  type SsdOptions,
  type SsdPlan,
} from './validate';

/** The gradients of the loss with respect to the forward's outputs. */
export interface SsdOutputGrads<T extends TensorLike = Tensor> {
  /** (batch, seqlen, nheads, headdim), of y's type (which is x's): the gradient with respect to y */
  dy: T;
  /** (batch, nheads, headdim, dstate), any float type: the gradient with respect to finalStates */
  dFinalStates?: T;
}

/** The gradients with respect to the inputs, each of its input's dims. */
export interface SsdGrads<T extends TensorLike = Tensor> {
  /** x's type */
  dx: T;
  /** dt's type */
  ddt: T;
  /** float32 (nheads) */
  dA: T;
  /** B's type */
  dB: T;
  /** C's type */
  dC: T;
  /** float32, D's dims; when D is given */
  dD?: T;
  /** z's type; when z is given */
  dz?: T;
  /** float32 (nheads); when dtBias is given */
  dDtBias?: T;
  /** float32 (batch, nheads, headdim, dstate); when initialStates is given */
  dInitialStates?: T;
}

export type SsdGradName = keyof SsdGrads;

/** The options of ssd() (returnFinalStates is ignored), with `out` holding gradient tensors to write into. */
export interface SsdBackwardOptions<T extends TensorLike = Tensor> extends Omit<SsdOptions<T>, 'out'> {
  /**
   * Tensors to write gradients into instead of new ones, each of the type and dims of the gradient it
   * replaces (see SsdGrads); only for gradients the call returns.
   */
  out?: Partial<SsdGrads<T>>;
  /**
   * The forward's yUngated (ssd() with returnUngated), of y's type and dims; only with inputs.z. The
   * CUDA backward then takes dz from it instead of recomputing the output before the gate; it must be
   * what the forward returned for these inputs and options. The CPU backward recomputes and does not
   * read it.
   */
  yUngated?: T;
}

const OUTPUT_GRAD_NAMES = ['dy', 'dFinalStates'] as const;
/** The gradients of SsdGrads, in order. */
export const GRAD_NAMES: readonly SsdGradName[] = ['dx', 'ddt', 'dA', 'dB', 'dC', 'dD', 'dz', 'dDtBias', 'dInitialStates'];

export interface GradSpec {
  name: SsdGradName;
  type: TensorType;
  dims: number[];
  layout: string;
}

/** The gradients one call returns: name, type, dims and layout, in SsdGrads order. */
export function gradSpecs(t: SsdInputs, plan: SsdPlan): GradSpec[] {
  const { batch: b, seqlen: L, nheads: h, headdim: p, ngroups: g, dstate: n } = plan;
  const specs: GradSpec[] = [
    { name: 'dx', type: t.x.type, dims: [b, L, h, p], layout: '(batch, seqlen, nheads, headdim)' },
    { name: 'ddt', type: t.dt.type, dims: [b, L, h], layout: '(batch, seqlen, nheads)' },
    { name: 'dA', type: 'float32', dims: [h], layout: '(nheads)' },
    { name: 'dB', type: t.B.type, dims: [b, L, g, n], layout: '(batch, seqlen, ngroups, dstate)' },
    { name: 'dC', type: t.C.type, dims: [b, L, g, n], layout: '(batch, seqlen, ngroups, dstate)' },
  ];
  if (t.D) specs.push({ name: 'dD', type: 'float32', dims: [...t.D.dims], layout: t.D.dims.length === 2 ? '(nheads, headdim)' : '(nheads)' });
  if (t.z) specs.push({ name: 'dz', type: t.z.type, dims: [b, L, h, p], layout: '(batch, seqlen, nheads, headdim)' });
  if (t.dtBias) specs.push({ name: 'dDtBias', type: 'float32', dims: [h], layout: '(nheads)' });
  if (t.initialStates) specs.push({ name: 'dInitialStates', type: 'float32', dims: [b, h, p, n], layout: '(batch, nheads, headdim, dstate)' });
  return specs;
}

/** The input of each gradient. */
export const GRAD_INPUT: Record<SsdGradName, keyof SsdInputs> = {
  dx: 'x',
  ddt: 'dt',
  dA: 'A',
  dB: 'B',
  dC: 'C',
  dD: 'D',
  dz: 'z',
  dDtBias: 'dtBias',
  dInitialStates: 'initialStates',
};

export interface BackwardCall {
  inputs: SsdInputs;
  plan: SsdPlan;
  grads: SsdOutputGrads;
  specs: GradSpec[];
  out: Partial<SsdGrads>;
  /** options.yUngated, checked */
  yUngated?: Tensor;
}

/** Validates ssdBackward()'s arguments; throws TypeError, RangeError or SsdError. */
export function validateBackward(inputs: unknown, grads: unknown, options: unknown): BackwardCall {
  let out: unknown;
  let yUngatedArg: unknown;
  let forwardOptions: unknown = options;
  if (isPlainObject(options)) {
    ({ out, yUngated: yUngatedArg, ...forwardOptions } = options);
  }
  const { inputs: t, plan } = validate(inputs, forwardOptions as SsdOptions);
  const { batch: b, seqlen: L, nheads: h, headdim: p, dstate: n } = plan;

  if (!isPlainObject(grads)) throw typeError('grads', 'an object { dy, dFinalStates? } of Tensors', grads);
  checkKnownKeys('key of grads', grads, OUTPUT_GRAD_NAMES);
  const yLayout = '(batch, seqlen, nheads, headdim)';
  const dyArg = asTensor(grads.dy, 'grads.dy', `a Tensor ${yLayout}`);
  if (dyArg.type !== t.x.type) {
    throw new TypeError(
      `Expected a Tensor of type '${t.x.type}' (the type of y, which is x's) for grads.dy but received a Tensor of type '${dyArg.type}'`,
    );
  }
  const dy = tensorArg('grads.dy', dyArg, [t.x.type], 4, yLayout);
  if (!sameDims(dy.dims, [b, L, h, p])) throw shapeError('grads.dy', [b, L, h, p], `${yLayout}, the dims of y,`, dy.dims);
  const checked: SsdOutputGrads = { dy };
  if (grads.dFinalStates !== undefined) {
    const layout = '(batch, nheads, headdim, dstate)';
    const s = tensorArg('grads.dFinalStates', grads.dFinalStates, OUTPUT_GRAD_TYPES.dFinalStates, 4, layout);
    if (!sameDims(s.dims, [b, h, p, n])) throw shapeError('grads.dFinalStates', [b, h, p, n], layout, s.dims);
    checked.dFinalStates = s;
  }

  let yUngated: Tensor | undefined;
  if (yUngatedArg !== undefined) {
    if (t.z === undefined) {
      throw new SsdError('ERR_SSD_OPTION', 'options.yUngated is given but inputs.z is not (yUngated is the output before the gate)');
    }
    yUngated = tensorArg('options.yUngated', yUngatedArg, [t.x.type], 4, yLayout);
    if (!sameDims(yUngated.dims, [b, L, h, p])) throw shapeError('options.yUngated', [b, L, h, p], `${yLayout}, the dims of y,`, yUngated.dims);
  }

  const specs = gradSpecs(t, plan);
  const given: Partial<SsdGrads> = {};
  if (out !== undefined) {
    if (!isPlainObject(out)) throw typeError('options.out', `an object { ${GRAD_NAMES.join(', ')} } of gradient Tensors (all optional)`, out);
    checkKnownKeys('key of options.out', out, GRAD_NAMES);
    const taken = new Set<Tensor>([...Object.values(t), ...Object.values(checked), ...(yUngated ? [yUngated] : [])] as Tensor[]);
    for (const name of GRAD_NAMES) {
      const tensor = out[name];
      if (tensor === undefined) continue;
      const spec = specs.find((s) => s.name === name);
      if (spec === undefined) {
        throw new SsdError('ERR_SSD_OPTION', `options.out.${name} is given but inputs.${GRAD_INPUT[name]} is not, so there is no ${name} to write`);
      }
      const checkedOut = tensorArg(`options.out.${name}`, tensor, [spec.type], spec.dims.length, spec.layout);
      if (!sameDims(checkedOut.dims, spec.dims)) throw shapeError(`options.out.${name}`, spec.dims, spec.layout, checkedOut.dims);
      if (taken.has(checkedOut)) {
        throw new SsdError('ERR_SSD_VALUE', `Expected options.out.${name} to be a tensor apart from the inputs, grads and other outputs but received one of them`);
      }
      taken.add(checkedOut);
      given[name] = checkedOut;
    }
  }
  // cuSeqlens goes to the native backward as it is: validate() has checked a host one's values
  // (a device one's are not read back, as in the forward)
  return { inputs: t, plan, grads: checked, specs, out: given, yUngated };
}
