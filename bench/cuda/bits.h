// A 32-bit FNV-1a hash over the bytes of a case's outputs, printed by the harnesses so that two builds
// (or the CPU emulation of two versions of a kernel) can be compared bit for bit.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <vector>

inline uint32_t fnv1a(std::initializer_list<const std::vector<char>*> bufs) {
  uint32_t h = 2166136261u;
  for (const std::vector<char>* b : bufs)
    for (char c : *b) h = (h ^ static_cast<unsigned char>(c)) * 16777619u;
  return h;
}
