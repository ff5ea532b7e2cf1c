/* The benchmark's USDT probe behind a semaphore (bench/target.c's `gated` mode): its
 * argument is computed only while a tracer has the semaphore raised, so an untraced call
 * costs a load and a branch. sys/sdt.h gives every probe in a file a semaphore or none,
 * which is why this one has a file of its own. */
#define _SDT_HAS_SEMAPHORES 1
#include <stdint.h>
#include <sys/sdt.h>

/* Raised by the kernel (uprobe ref_ctr_offset) for each tracer attached to bench:gated. */
__extension__ unsigned short bench_gated_semaphore __attribute__((unused))
__attribute__((section(".probes")));

/* The argument a probe site computes: a stand-in for formatting a query or a request. */
__attribute__((noinline)) uint64_t expensive_argument(uint64_t i) {
    uint64_t h = i ^ 0x9e3779b97f4a7c15ull;
    for (int k = 0; k < 16; k++) {
        h ^= h >> 29;
        h *= 0xbf58476d1ce4e5b9ull;
    }
    return h;
}

__attribute__((noinline)) uint64_t bench_gated(uint64_t i) {
    if (__builtin_expect(bench_gated_semaphore, 0)) {
        uint64_t argument = expensive_argument(i);
        DTRACE_PROBE1(bench, gated, argument);
        return argument;
    }
    return 0;
}
