/* Benchmark target: calls an exported, non-inlined function (which starts with a plain
 * `push %rbp`) and, optionally, libc malloc/free, N times; prints ns/call.
 *
 *   target MODE N [RATE]
 *     MODE  fn       bench_fn(i) N times
 *           malloc   malloc(64)+free N times
 *           wait     wait until bench_fn's first byte becomes 0xCC (a uprobe installed in
 *                    this process's text), print CLOCK_MONOTONIC ns at that moment, exit;
 *                    N is the timeout in ms, and a third word may name bench_req instead
 *           malloc-for  wait (up to 30 s) until malloc is probed in this process, then call
 *                    malloc(64)+free for N seconds as fast as possible; print calls made
 *           req      bench_req(&request, name) N times: a C function with debug info
 *                    (built with -g), for typed and debug-info arguments
 *           usdt     the USDT probe bench:plain N times, its argument always computed
 *           gated    the USDT probe bench:gated N times, its argument computed only while
 *                    its semaphore says a tracer is attached
 *           fn2      two threads, each calling bench_fn N/2 times (RATE is per thread)
 *     RATE  calls per second to pace at (0 = as fast as possible)
 *
 * Output (one line): "calls=N ns_per_call=X elapsed_ns=E"  or  "probed_at_ns=T".
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <sys/sdt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Written in assembly so every compiler gives it the same first instruction. */
__asm__(".text\n"
        ".globl bench_fn\n"
        ".type bench_fn, @function\n"
        "bench_fn:\n"
        "  push %rbp\n"
        "  mov %rsp, %rbp\n"
        "  mov %rdi, %rax\n"
        "  xor $0x5a5a, %rax\n"
        "  pop %rbp\n"
        "  ret\n"
        ".size bench_fn, .-bench_fn\n");
uint64_t bench_fn(uint64_t x);

/* Typed and debug-info arguments: `-a r->len,name` through DWARF, `-a 0,1` raw. */
struct bench_req {
    uint32_t kind;
    uint32_t len;
    const char *path;
};

__attribute__((noinline)) uint64_t bench_req(const struct bench_req *r, const char *name) {
    __asm__ volatile("" : : "r"(r), "r"(name) : "memory");
    return r->len + (uint64_t)name[0];
}

/* bench/gated.c: the USDT probe bench:gated behind its semaphore (sys/sdt.h gives every
 * probe of a file a semaphore or none, so it lives in a file of its own). */
uint64_t expensive_argument(uint64_t i);
uint64_t bench_gated(uint64_t i);


static uint64_t now_ns(void);

struct pacing {
    uint64_t calls, rate, sink;
};

static void *call_paced(void *arg) {
    struct pacing *p = arg;
    uint64_t start = now_ns(), gap = p->rate ? 1000000000ull / p->rate : 0;
    for (uint64_t i = 0; i < p->calls; i++) {
        if (gap) {
            while (now_ns() < start + i * gap) {
            }
        }
        p->sink += bench_fn(i);
    }
    return NULL;
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s fn|malloc|wait|malloc-for N [RATE]\n", argv[0]);
        return 2;
    }
    /* stdout gets a static buffer now, so printing the result later does not call malloc
     * while a tracer may still be counting mallocs. */
    static char out_buffer[4096];
    setvbuf(stdout, out_buffer, _IOLBF, sizeof out_buffer);
    const char *mode = argv[1];
    uint64_t n = strtoull(argv[2], NULL, 10);
    uint64_t rate = argc > 3 ? strtoull(argv[3], NULL, 10) : 0;
    if (strcmp(mode, "wait") == 0) {
        /* wait MS [bench_fn|bench_req]: which function's first byte to watch. */
        const char *which = argc > 3 ? argv[3] : "bench_fn";
        volatile unsigned char *text = strcmp(which, "bench_req") == 0
                                           ? (volatile unsigned char *)(uintptr_t)&bench_req
                                           : (volatile unsigned char *)(uintptr_t)&bench_fn;
        uint64_t deadline = now_ns() + n * 1000000ull; /* N = timeout in ms */
        while (*text != 0xCC) {
            if (now_ns() > deadline) {
                printf("probed_at_ns=0\n");
                return 1;
            }
        }
        printf("probed_at_ns=%llu\n", (unsigned long long)now_ns());
        return 0;
    }
    if (strcmp(mode, "malloc-for") == 0) {
        volatile unsigned char *text = (volatile unsigned char *)(uintptr_t)&malloc;
        uint64_t deadline = now_ns() + 30000000000ull;
        while (*text != 0xCC) {
            if (now_ns() > deadline) {
                printf("calls=0 never probed\n");
                return 1;
            }
        }
        uint64_t start = now_ns(), end = start + n * 1000000000ull, calls = 0;
        while ((calls & 1023) || now_ns() < end) {
            void *p = malloc(64);
            __asm__ volatile("" : : "r"(p) : "memory");
            free(p);
            calls++;
        }
        printf("calls=%llu ns_per_call=%.1f elapsed_ns=%llu\n", (unsigned long long)calls,
               (double)(now_ns() - start) / (double)calls, (unsigned long long)(now_ns() - start));
        return 0;
    }
    if (strcmp(mode, "fn2") == 0) {
        struct pacing each[2] = {{n / 2, rate, 0}, {n - n / 2, rate, 0}};
        pthread_t other;
        uint64_t start = now_ns();
        pthread_create(&other, NULL, call_paced, &each[1]);
        call_paced(&each[0]);
        pthread_join(other, NULL);
        uint64_t elapsed = now_ns() - start;
        printf("calls=%llu ns_per_call=%.1f elapsed_ns=%llu sink=%llu\n", (unsigned long long)n,
               (double)elapsed / (double)n, (unsigned long long)elapsed,
               (unsigned long long)(each[0].sink + each[1].sink));
        return 0;
    }
    struct bench_req request = {.kind = 3, .len = 0, .path = "/index.html"};
    uint64_t sink = 0;
    uint64_t start = now_ns();
    uint64_t gap = rate ? 1000000000ull / rate : 0;
    for (uint64_t i = 0; i < n; i++) {
        if (gap) {
            uint64_t due = start + i * gap;
            while (now_ns() < due) {
            }
        }
        if (mode[0] == 'f') {
            sink += bench_fn(i);
        } else if (mode[0] == 'r') {
            request.len = (uint32_t)i;
            sink += bench_req(&request, "bench");
        } else if (mode[0] == 'u') {
            uint64_t argument = expensive_argument(i);
            DTRACE_PROBE1(bench, plain, argument);
            sink += argument;
        } else if (mode[0] == 'g') {
            sink += bench_gated(i);
        } else {
            void *p = malloc(64);
            __asm__ volatile("" : : "r"(p) : "memory");
            free(p);
        }
    }
    uint64_t elapsed = now_ns() - start;
    printf("calls=%llu ns_per_call=%.1f elapsed_ns=%llu sink=%llu\n", (unsigned long long)n,
           (double)elapsed / (double)n, (unsigned long long)elapsed, (unsigned long long)sink);
    return 0;
}
