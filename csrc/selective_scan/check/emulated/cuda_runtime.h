// CPU stand-in for the parts of the CUDA runtime that scan_cuda.cu and cuda_check.cu use,
// so scripts/cuda-check-emulated can run the CUDA kernels' logic without a GPU. Blocks and
// warps run one after another. The 32 lanes of a warp run as std::threads, and shuffles
// and __syncwarp meet at a std::barrier. It checks the algorithm only: nvcc, the GPU
// memory model and performance are not exercised.
#pragma once

#include <barrier>
#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__

typedef int cudaError_t;
typedef void* cudaStream_t;
typedef void* cudaEvent_t;
enum { cudaSuccess = 0, cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2 };

struct EmulatedIndex {
  unsigned x = 0, y = 0, z = 0;
};
inline thread_local EmulatedIndex threadIdx, blockIdx;

inline const char* cudaGetErrorString(cudaError_t) { return "emulated CUDA error"; }
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline cudaError_t cudaMallocAsync(void** ptr, size_t bytes, cudaStream_t) {
  *ptr = std::calloc(bytes ? bytes : 1, 1);
  return cudaSuccess;
}
inline cudaError_t cudaFreeAsync(void* ptr, cudaStream_t) {
  std::free(ptr);
  return cudaSuccess;
}
template <typename T>
cudaError_t cudaMalloc(T** ptr, size_t bytes) {
  *ptr = static_cast<T*>(std::calloc(bytes ? bytes : 1, 1));
  return cudaSuccess;
}
inline cudaError_t cudaFree(void* ptr) {
  std::free(ptr);
  return cudaSuccess;
}
inline cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, int) {
  std::memcpy(dst, src, bytes);
  return cudaSuccess;
}
inline cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
inline cudaError_t cudaEventCreate(cudaEvent_t*) { return cudaSuccess; }
inline cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t = nullptr) { return cudaSuccess; }
inline cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
inline cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t, cudaEvent_t) {
  *ms = 0;
  return cudaSuccess;
}

inline double emulated_lanes[32];
inline std::barrier<>* emulated_warp = nullptr;
inline std::mutex emulated_atomics;

template <typename T>
T __shfl_xor_sync(unsigned, T value, int offset) {
  const unsigned lane = threadIdx.x % 32;
  emulated_warp->arrive_and_wait();  // every lane has read the previous shuffle
  emulated_lanes[lane] = static_cast<double>(value);
  emulated_warp->arrive_and_wait();
  return static_cast<T>(emulated_lanes[lane ^ offset]);
}
inline void __syncwarp() { emulated_warp->arrive_and_wait(); }
template <typename T>
T atomicAdd(T* address, T value) {
  std::lock_guard<std::mutex> lock(emulated_atomics);
  const T old = *address;
  *address = old + value;
  return old;
}

// Runs `kernel` for every block and warp. The script rewrites each <<<...>>> launch into a
// call of this function.
inline void emulated_launch(unsigned grid, unsigned block, const std::function<void()>& kernel) {
  for (unsigned b = 0; b < grid; ++b) {
    for (unsigned warp = 0; warp < block / 32; ++warp) {
      std::barrier<> barrier(32);
      emulated_warp = &barrier;
      std::vector<std::thread> lanes;
      for (unsigned lane = 0; lane < 32; ++lane) {
        lanes.emplace_back([&, b, warp, lane] {
          blockIdx.x = b;
          threadIdx.x = warp * 32 + lane;
          kernel();
        });
      }
      for (auto& thread : lanes) thread.join();
    }
  }
}
