#!/usr/bin/env python3
"""Compares the kernels of two PTX files, function by function: the sequence of float, memory, mma,
barrier, shuffle and atomic instructions, with register numbers, the translation unit's hash in
internal names, register-to-register float moves, float constant moves and the address expressions
erased. Equal sequences mean the same arithmetic
in the same order on the same kinds of accesses (the address arithmetic is not compared: a refactor
that keeps it right is checked by the harnesses and the fingerprints). Kernels renamed by a refactor
are matched through the renames below (old spelling -> new). Used by ptx_compare.sh.
  python3 ptx_compare.py OLD.ptx NEW.ptx      exit status 1 if any kernel differs or is missing"""
import re,sys,subprocess
def funcs(path):
    s=open(path).read(); out={}
    ms=list(re.finditer(r'\.entry (\S+)\(', s))
    names=[m.group(1) for m in ms]
    dem=subprocess.run(['c++filt'],input='\n'.join(names),capture_output=True,text=True).stdout.split('\n')
    for i,m in enumerate(ms):
        end=ms[i+1].start() if i+1<len(ms) else len(s)
        body=s[m.start():end]
        body=re.sub(r'%(r|rd|f|fd|p|rs|h|hh)[0-9]+',r'%\1',body); body=re.sub(r'_GLOBAL__N__[0-9a-f]+_','ANON',body); body=re.sub(r'_INTERNAL_[0-9a-f]+_','INT',body); body=re.sub(r'mov.f32\s+%f, %f;','',body); body=re.sub(r'mov.f32\s+%f, 0f[0-9A-F]+;','',body); body=re.sub(r'\[[^\]]*\]','[A]',body)
        lines=[l.strip() for l in body.split('\n') if re.search(r'\.f32|\.f64|bf16|f16|mma|ex2|ldmatrix|cp\.async|\bst\.|\bld\.|bar\.|shfl|atom|red\.',l) and '.reg' not in l and 'ld.param' not in l]
        out[dem[i]]=lines
    return out
a=funcs(sys.argv[1]); b=funcs(sys.argv[2])
def canon(n):
    n=re.sub(r'\(anonymous namespace\)::','',n)
    for pat,rep in [(r'k_bwd_main_fixed<([^,]+), (\d+)>', r'k_bwd_main<MainFixedShape<\1, \2> >'),
                    (r'k_bwd_main<(__half|__nv_bfloat16|float), (\d+), (\d+)>', r'k_bwd_main<MainAnySize<\1, \2, \3> >'),
                    (r'k_bwd_pass_dcb_fixed<([^,>]+)>', r'k_bwd_pass_dcb<DcbFixedShape<\1> >'),
                    (r'k_bwd_pass_dcb<(__half|__nv_bfloat16|float)>', r'k_bwd_pass_dcb<DcbAnySize<\1> >'),(r'k_chunk_scan_fixed<([^,]+), (\d+), (\d+)>', r'k_chunk_scan<ScanFixed<\1, \2, \3> >'),
                    (r'k_chunk_scan<(__half|__nv_bfloat16|float), (\d+)>', r'k_chunk_scan<ScanAnySize<\1, \2> >')]:
        n=re.sub(pat,rep,n)
    return n.replace('ssd::cuda::','').split('(')[0]
A={canon(k):v for k,v in a.items()}; B={canon(k):v for k,v in b.items()}
bad=0
for k in sorted(set(A)|set(B)):
    if k not in A or k not in B: print('ONLY', 'old' if k in A else 'new', k); bad+=1; continue
    if A[k]!=B[k]:
        bad+=1; print('DIFF', k, len(A[k]), len(B[k]))
print(len(A),'kernels before,',len(B),'after,',bad,'differ')
sys.exit(1 if bad else 0)
