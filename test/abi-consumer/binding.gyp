{
  # An example consumer of the C ABI: the header's folder comes from the installed package, and
  # nothing of ssd-kernels is linked (the function table arrives at run time).
  "targets": [
    {
      "target_name": "abi_consumer",
      "sources": ["consumer.c"],
      "include_dirs": ["<!(node -p \"require('ssd-kernels/native').includeDir\")"],
      "defines": ["NAPI_VERSION=8"],
      "cflags_c": ["-std=c11", "-Wall", "-Wextra", "-Wpedantic", "-Werror"],
      "libraries": ["-ldl"]
    }
  ]
}
