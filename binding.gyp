{
  # The CPU-only build (node-gyp): installing from source needs nothing but a C++ compiler.
  # The kernel body is compiled once per instruction set (file names say which) and chosen at run time.
  "variables": {
    "ssd_common_cflags": ["-O3", "-fno-math-errno", "-std=c++17", "-fvisibility=hidden"]
  },
  "targets": [
    {
      "target_name": "ssd_cpu_simd",
      "type": "static_library",
      "conditions": [
        ["target_arch=='x64'", {
          "sources": ["<!@(node scripts/gyp-sources.js avx2)"],
          "cflags_cc": ["<@(ssd_common_cflags)", "-mavx2", "-mfma", "-mf16c"]
        }, {
          "sources": []
        }]
      ],
      "include_dirs": ["include", "csrc"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"]
    },
    {
      "target_name": "ssd_cpu_avx512",
      "type": "static_library",
      "conditions": [
        ["target_arch=='x64'", {
          "sources": ["<!@(node scripts/gyp-sources.js avx512)"],
          "cflags_cc": ["<@(ssd_common_cflags)", "-mavx512f", "-mavx512vl", "-mavx512bw", "-mavx512dq", "-mfma", "-mf16c"]
        }, {
          "sources": []
        }]
      ],
      "include_dirs": ["include", "csrc"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"]
    },
    {
      "target_name": "ssd_kernels",
      "dependencies": ["ssd_cpu_simd", "ssd_cpu_avx512"],
      "sources": ["<!@(node scripts/gyp-sources.js host)", "csrc/device/device_none.cpp", "<!@(node scripts/gyp-sources.js baseline)"],
      "include_dirs": ["<!@(node -p \"require('node-addon-api').include\")", "include", "csrc"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags_cc": ["<@(ssd_common_cflags)", "-fexceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"],
      "libraries": ["-lpthread"]
    }
  ]
}
