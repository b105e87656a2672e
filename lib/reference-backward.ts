/**
 * The float64 reference backward: the exact reverse of the token recurrence in ./reference.ts
 * (§1 of the spec), with every option, following the rules of §3. It gives the gradients of
 *
 *     L = Σ dy · y + Σ dFinalStates · finalStates
 *
 * with respect to every differentiable input of ssdReference. Per (batch, head) it runs the forward
 * recurrence once, storing every state H_{-1} .. H_{L-1} ((L + 1)·p·n doubles), then walks the
 * sequence backwards carrying dH. Gradients of quantities shared across heads (B, C within a group)
 * or across positions (A, D, dtBias) are accumulated in a fixed order.
 */
import { SsdError } from './errors';
import { softplus, type RefInputs } from './reference';

// Math's functions bound once: the hot loops below then read no global, which costs much more
// inside a vm context such as jest's.
const { abs, exp, floor, max, min } = Math;

export interface RefGrads {
  dx: Float64Array; // (b, L, h, p)
  ddt: Float64Array; // (b, L, h)
  dA: Float64Array; // (h)
  dB: Float64Array; // (b, L, g, n)
  dC: Float64Array; // (b, L, g, n)
  dD?: Float64Array; // (h) or (h, p), as D; only when D is given
  dz?: Float64Array; // (b, L, h, p); only when z is given
  dDtBias?: Float64Array; // (h); only when dtBias is given
  dInitialStates?: Float64Array; // (b, h, p, n); only when initialStates is given
}

/**
 * The gradients that are sums over positions (dA, dD, dDtBias), summed in magnitude: Σ|term| for
 * each entry, down to the products inside each term (dA's ⟨dH_t, H_{t-1}⟩ and dDtBias's
 * ⟨dH_t, x_t ⊗ B_t⟩ are sums of p·n products themselves). A sum whose terms cancel (|Σ| ≪ Σ|term|)
 * carries the rounding of its terms at that scale, so an error of such a gradient is judged against
 * these (test/fuzz-cases.ts).
 */
export interface RefAbsSums {
  dA?: Float64Array;
  dD?: Float64Array;
  dDtBias?: Float64Array;
  /** per (batch, position, head): ddt is a sum of headdim · dstate products of both signs */
  ddt?: Float64Array;
}

function sigmoid(u: number): number {
  return 1 / (1 + exp(-u));
}

export function ssdReferenceBackward(r: RefInputs, dy: ArrayLike<number>, dFinalStates?: ArrayLike<number>, absSums?: RefAbsSums): RefGrads {
  const { batch, seqlen: L, nheads: h, headdim: p, ngroups: g, dstate: n } = r;
  const [lo, hi] = r.dtLimit ?? [0, Infinity];
  const dtSoftplus = r.dtSoftplus ?? false;
  const headsPerGroup = h / g;
  const pn = p * n;
  if (dy.length !== batch * L * h * p) {
    throw new SsdError('ERR_SSD_SHAPE', `dy has ${dy.length} elements, expected ${batch * L * h * p} (b, L, h, p)`);
  }
  if (dFinalStates && dFinalStates.length !== batch * h * pn) {
    throw new SsdError('ERR_SSD_SHAPE', `dFinalStates has ${dFinalStates.length} elements, expected ${batch * h * pn} (b, h, p, n)`);
  }

  const dx = new Float64Array(batch * L * h * p);
  const ddt = new Float64Array(batch * L * h);
  const dA = new Float64Array(h);
  const dB = new Float64Array(batch * L * g * n);
  const dC = new Float64Array(batch * L * g * n);
  const dD = r.D ? new Float64Array(r.dPerChannel ? h * p : h) : undefined;
  const dz = r.z ? new Float64Array(batch * L * h * p) : undefined;
  const dDtBias = r.dtBias ? new Float64Array(h) : undefined;
  const dInitialStates = r.initialStates ? new Float64Array(batch * h * pn) : undefined;
  // Σ|term| of the summed gradients, when the caller asks (absSums)
  const dAAbs = absSums ? (absSums.dA = new Float64Array(h)) : undefined;
  const dDAbs = absSums && dD ? (absSums.dD = new Float64Array(dD.length)) : undefined;
  const dDtBiasAbs = absSums && dDtBias ? (absSums.dDtBias = new Float64Array(h)) : undefined;
  const ddtAbs = absSums ? (absSums.ddt = new Float64Array(batch * L * h)) : undefined;

  // Per (batch, head) scratch: states H_{t-1} at offset t·pn (t = 0 .. L, so H_{-1} sits at 0), the
  // step sizes, the pre-clamp values (for the clamp's indicator), the decays exp(d·A) and whether
  // position t continues the sequence of t - 1 (keep; at a new sequence the state restarts from zero,
  // as in ssdReference, and nothing flows back across the boundary, not even 0 · NaN).
  const states = new Float64Array((L + 1) * pn);
  const dStep = new Float64Array(L);
  const preClamp = new Float64Array(L);
  const decays = new Float64Array(L);
  const keeps = new Uint8Array(L);
  const dH = new Float64Array(pn);
  const g_ = new Float64Array(p); // dy after the gate, for one position

  for (let b = 0; b < batch; b++) {
    for (let head = 0; head < h; head++) {
      const group = floor(head / headsPerGroup);
      const stateBase = (b * h + head) * pn;
      const A = r.A[head];
      const bias = r.dtBias ? r.dtBias[head] : 0;

      // Forward, storing every state (same arithmetic as ssdReference).
      for (let i = 0; i < pn; i++) states[i] = r.initialStates ? r.initialStates[stateBase + i] : 0;
      let previousSeq = 0; // seqIdx_{-1} := 0
      for (let t = 0; t < L; t++) {
        const u = r.dt[(b * L + t) * h + head] + bias;
        const v = dtSoftplus ? softplus(u) : u;
        const d = min(max(v, lo), hi);
        let keep = true;
        if (r.seqIdx) {
          const s = r.seqIdx[b * L + t];
          keep = s === previousSeq;
          previousSeq = s;
        }
        const decay = exp(d * A);
        preClamp[t] = v;
        dStep[t] = d;
        decays[t] = decay;
        keeps[t] = keep ? 1 : 0;
        const xBase = ((b * L + t) * h + head) * p;
        const bcBase = ((b * L + t) * g + group) * n;
        const prev = t * pn;
        const next = prev + pn;
        for (let i = 0; i < p; i++) {
          const dxv = d * r.x[xBase + i];
          for (let j = 0; j < n; j++) {
            states[next + i * n + j] = (keep ? decay * states[prev + i * n + j] : 0) + dxv * r.B[bcBase + j];
          }
        }
      }

      // Backward over positions. dH holds dL/dH_t (all paths from positions > t, plus the final states).
      for (let i = 0; i < pn; i++) dH[i] = dFinalStates ? dFinalStates[stateBase + i] : 0;
      for (let t = L - 1; t >= 0; t--) {
        const d = dStep[t];
        const decay = decays[t];
        const keep = keeps[t] === 1;
        const xBase = ((b * L + t) * h + head) * p;
        const bcBase = ((b * L + t) * g + group) * n;
        const prev = t * pn; // H_{t-1}
        const cur = prev + pn; // H_t

        // Output y_t = gate(H_t · C_t + D ⊙ x_t): gate, skip, and dH_t += dȳ ⊗ C_t, dC_t += dȳ · H_t.
        for (let i = 0; i < p; i++) {
          let gi = dy[xBase + i];
          const xv = r.x[xBase + i];
          if (r.z && dz) {
            let pre = 0; // ȳ, the pre-gate output
            for (let j = 0; j < n; j++) pre += states[cur + i * n + j] * r.C[bcBase + j];
            if (r.D) pre += (r.dPerChannel ? r.D[head * p + i] : r.D[head]) * xv;
            const zv = r.z[xBase + i];
            const sz = sigmoid(zv);
            dz[xBase + i] = gi * pre * sz * (1 + zv * (1 - sz));
            gi *= zv / (1 + exp(-zv)); // silu(z), as the forward computes it
          }
          g_[i] = gi;
          if (r.D && dD) {
            const k = r.dPerChannel ? head * p + i : head;
            dD[k] += gi * xv;
            if (dDAbs) dDAbs[k] += abs(gi * xv);
            dx[xBase + i] += r.D[k] * gi;
          }
          for (let j = 0; j < n; j++) dH[i * n + j] += gi * r.C[bcBase + j];
        }
        for (let j = 0; j < n; j++) {
          let acc = 0;
          for (let i = 0; i < p; i++) acc += g_[i] * states[cur + i * n + j];
          dC[bcBase + j] += acc;
        }

        // State update H_t = decay · H_{t-1} + d · x_t ⊗ B_t.
        let dDecay = 0; // ⟨dH_t, H_{t-1}⟩
        let dd = 0; // ⟨dH_t, x_t ⊗ B_t⟩
        let dDecayAbs = 0; // Σ|products| of both (absSums)
        let ddAbs = 0;
        for (let i = 0; i < p; i++) {
          const xv = r.x[xBase + i];
          let rowB = 0; // Σ_j dH[i, j] B_j
          let rowBAbs = 0;
          for (let j = 0; j < n; j++) {
            const gij = dH[i * n + j];
            dDecay += gij * states[prev + i * n + j];
            rowB += gij * r.B[bcBase + j];
            if (absSums) {
              dDecayAbs += abs(gij * states[prev + i * n + j]);
              rowBAbs += abs(gij * r.B[bcBase + j]);
            }
          }
          dd += rowB * xv;
          ddAbs += rowBAbs * abs(xv);
          dx[xBase + i] += d * rowB;
        }
        for (let j = 0; j < n; j++) {
          let acc = 0;
          for (let i = 0; i < p; i++) acc += dH[i * n + j] * r.x[xBase + i];
          dB[bcBase + j] += d * acc;
        }
        // dH_{t-1}; zero across a seqIdx reset
        if (keep) for (let i = 0; i < pn; i++) dH[i] *= decay;
        else dH.fill(0);

        // H_t = decay · H_{t-1} + ..., decay = exp(d · A), where the sequence continues: with
        // da = dDecay · decay (zero at a reset, where H_{t-1} belongs to another sequence),
        // dd += A · da and dA += d · da.
        const da = keep ? dDecay * decay : 0;
        const daAbs = keep ? dDecayAbs * decay : 0;
        dd += A * da;
        ddAbs += abs(A) * daAbs;
        dA[head] += d * da;
        if (dAAbs) dAAbs[head] += abs(d) * daAbs;

        // d = clamp(sp(u), lo, hi), u = dt + dtBias: the gradient passes where the clamp does not
        // hold d, which includes a NaN v (the clamp returns it), so that a NaN dt gets a NaN ddt.
        const v = preClamp[t];
        let du = 0;
        let duAbs = 0;
        if (!(v < lo) && !(v > hi)) {
          const u = r.dt[(b * L + t) * h + head] + bias;
          du = dtSoftplus && u <= 20 ? dd * sigmoid(u) : dd;
          duAbs = dtSoftplus && u <= 20 ? ddAbs * sigmoid(u) : ddAbs;
        }
        ddt[(b * L + t) * h + head] = du;
        if (ddtAbs) ddtAbs[(b * L + t) * h + head] = duAbs;
        if (dDtBias) dDtBias[head] += du;
        if (dDtBiasAbs) dDtBiasAbs[head] += duAbs;
      }
      if (dInitialStates) dInitialStates.set(dH, stateBase);
    }
  }

  const grads: RefGrads = { dx, ddt, dA, dB, dC };
  if (dD) grads.dD = dD;
  if (dz) grads.dz = dz;
  if (dDtBias) grads.dDtBias = dDtBias;
  if (dInitialStates) grads.dInitialStates = dInitialStates;
  return grads;
}
