/* Native benchmark of the order book core (matching/csrc/book.c), no Python involved.
 *
 *   harness FILE [--prefill N] [--repeat R] [--warmup W] [--chunk C] [--dump-events N OUT]
 *           [--release-memory]
 *
 * FILE holds int64 records of 7 fields (op, order_id, owner, side, price, qty, flags), the layout
 * of OrderBook.apply's buffer. The first --prefill commands build the book and are never timed.
 *
 * Passes, each on a fresh book:
 *   warm-up    W untimed runs over the whole stream (page faults, caches, branch predictors);
 *   throughput R runs of ob_apply per command with one clock read around the loop;
 *   batch      R runs of ob_apply_batch on chunks of C commands (what the extension's apply does);
 *   latency    1 run with a CLOCK_MONOTONIC read before and after every command.
 * Memory freed by one pass is kept for the next unless --release-memory (glibc would otherwise give
 * it back to the kernel and every pass of a growing book would take its page faults again, which a
 * long-lived engine does not; bench/book.py asks the same of its own process).
 * Prints one JSON object. --dump-events writes the events of the first N commands (ob_apply_batch,
 * 6 int64 each, the layout of apply's result) to OUT so the caller can compare them with the
 * extension's. */
#define _GNU_SOURCE
#include "book.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int64_t pct(const int64_t *sorted, size_t n, double p) {
    if (n == 0) return 0;
    size_t i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
    return sorted[i < n ? i : n - 1];
}

static void die(const char *msg) {
    fprintf(stderr, "harness: %s\n", msg);
    exit(2);
}

static ob_command *read_commands(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open the command file");
    if (fseek(f, 0, SEEK_END) != 0) die("cannot seek");
    long size = ftell(f);
    if (size < 0 || size % (long)sizeof(ob_command) != 0) die("file size is not a multiple of 56 bytes");
    rewind(f);
    *n = (size_t)size / sizeof(ob_command);
    ob_command *cmds = malloc(size ? (size_t)size : 1);
    if (!cmds) die("out of memory");
    if (*n && fread(cmds, sizeof(ob_command), *n, f) != *n) die("short read");
    fclose(f);
    return cmds;
}

typedef struct {
    size_t rejects, events, final_orders;
} run_info;

/* one run of ob_apply per command; returns the nanoseconds of the measured part */
static int64_t run_single(const ob_command *cmds, size_t n, size_t prefill, ob_events *out, run_info *info) {
    ob_book *b = ob_new();
    if (!b) die("ob_new failed");
    size_t rejects = 0, events = 0;
    for (size_t i = 0; i < prefill; i++) {
        out->len = 0;
        if (ob_apply(b, &cmds[i], out) != OB_OK) rejects++;
    }
    int64_t t0 = now_ns();
    for (size_t i = prefill; i < n; i++) {
        out->len = 0;
        if (ob_apply(b, &cmds[i], out) != OB_OK) rejects++;
        events += out->len;
    }
    int64_t t1 = now_ns();
    if (info) {
        info->rejects = rejects;
        info->events = events;
        info->final_orders = ob_order_count(b);
    }
    ob_free(b);
    return t1 - t0;
}

static int64_t run_batch(const ob_command *cmds, size_t n, size_t prefill, size_t chunk, ob_events *out,
                         size_t *events_out) {
    ob_book *b = ob_new();
    if (!b) die("ob_new failed");
    out->len = 0;
    if (prefill && ob_apply_batch(b, cmds, prefill, out) != OB_OK) die("ob_apply_batch failed");
    size_t events = 0;
    int64_t t0 = now_ns();
    for (size_t i = prefill; i < n; i += chunk) {
        size_t m = n - i < chunk ? n - i : chunk;
        out->len = 0;
        if (ob_apply_batch(b, cmds + i, m, out) != OB_OK) die("ob_apply_batch failed");
        events += out->len;
    }
    int64_t t1 = now_ns();
    if (events_out) *events_out = events;
    ob_free(b);
    return t1 - t0;
}

int main(int argc, char **argv) {
    if (argc < 2) die("usage: harness FILE [--prefill N] [--repeat R] [--warmup W] [--chunk C] [--dump-events N OUT] [--release-memory]");
    const char *path = argv[1];
    size_t prefill = 0, dump_n = 0, chunk = 1000;
    int repeat = 5, warmup = 1, keep_memory = 1;
    const char *dump_path = NULL;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--prefill") && i + 1 < argc) prefill = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--repeat") && i + 1 < argc) repeat = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--warmup") && i + 1 < argc) warmup = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--chunk") && i + 1 < argc) chunk = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--release-memory")) keep_memory = 0;
        else if (!strcmp(argv[i], "--dump-events") && i + 2 < argc) {
            dump_n = strtoull(argv[++i], NULL, 10);
            dump_path = argv[++i];
        } else die("bad arguments");
    }
    if (repeat < 1) repeat = 1;
#ifdef __GLIBC__
    if (keep_memory) {
        mallopt(M_TRIM_THRESHOLD, 1 << 30);
        mallopt(M_MMAP_THRESHOLD, 1 << 30);
    }
#endif
    if (chunk < 1) chunk = 1;

    size_t n;
    ob_command *cmds = read_commands(path, &n);
    if (prefill > n) die("prefill is larger than the stream");
    size_t measured = n - prefill;
    ob_events out = {0};

    if (dump_path) {
        size_t m = dump_n < n ? dump_n : n;
        ob_book *b = ob_new();
        if (!b) die("ob_new failed");
        if (ob_apply_batch(b, cmds, m, &out) != OB_OK) die("ob_apply_batch failed");
        FILE *f = fopen(dump_path, "wb");
        if (!f) die("cannot write the events file");
        if (out.len && fwrite(out.data, sizeof(ob_event), out.len, f) != out.len) die("short write");
        fclose(f);
        ob_free(b);
    }

    for (int w = 0; w < warmup; w++) run_single(cmds, n, prefill, &out, NULL);

    run_info info = {0};
    double *rates = malloc(sizeof(double) * (size_t)repeat);
    double *batch_rates = malloc(sizeof(double) * (size_t)repeat);
    if (!rates || !batch_rates) die("out of memory");
    for (int r = 0; r < repeat; r++) {
        int64_t ns = run_single(cmds, n, prefill, &out, &info);
        rates[r] = ns > 0 ? (double)measured * 1e9 / (double)ns : 0.0;
    }
    size_t batch_events = 0;
    for (int r = 0; r < repeat; r++) {
        int64_t ns = run_batch(cmds, n, prefill, chunk, &out, &batch_events);
        batch_rates[r] = ns > 0 ? (double)measured * 1e9 / (double)ns : 0.0;
    }
    qsort(rates, (size_t)repeat, sizeof(double), cmp_double);
    qsort(batch_rates, (size_t)repeat, sizeof(double), cmp_double);

    /* latency: a clock read on each side of every command */
    int64_t *lat = malloc(sizeof(int64_t) * (measured ? measured : 1));
    if (!lat) die("out of memory");
    ob_book *b = ob_new();
    if (!b) die("ob_new failed");
    for (size_t i = 0; i < prefill; i++) {
        out.len = 0;
        ob_apply(b, &cmds[i], &out);
    }
    int64_t lat_t0 = now_ns();
    for (size_t i = prefill; i < n; i++) {
        out.len = 0;
        int64_t t0 = now_ns();
        ob_apply(b, &cmds[i], &out);
        lat[i - prefill] = now_ns() - t0;
    }
    int64_t lat_total = now_ns() - lat_t0;
    ob_free(b);
    double lat_mean = 0;
    for (size_t i = 0; i < measured; i++) lat_mean += (double)lat[i];
    lat_mean = measured ? lat_mean / (double)measured : 0;

    /* the same latencies by op and kind: limit GTC, limit IOC/FOK, market, cancel, amend */
    static const char *kinds[] = {"limit_gtc", "limit_ioc", "market", "cancel", "amend"};
    enum { KINDS = 5 };
    int64_t *by_kind[KINDS];
    size_t kind_n[KINDS] = {0};
    double kind_sum[KINDS] = {0};
    for (int k = 0; k < KINDS; k++) {
        by_kind[k] = malloc(sizeof(int64_t) * (measured ? measured : 1));
        if (!by_kind[k]) die("out of memory");
    }
    for (size_t i = 0; i < measured; i++) {
        const ob_command *c = &cmds[prefill + i];
        int k;
        switch (c->op) {
        case OB_OP_LIMIT: k = (c->flags & OB_FLAG_TIF_MASK) == OB_GTC ? 0 : 1; break;
        case OB_OP_MARKET: k = 2; break;
        case OB_OP_CANCEL: k = 3; break;
        case OB_OP_AMEND: k = 4; break;
        default: continue;
        }
        by_kind[k][kind_n[k]++] = lat[i];
        kind_sum[k] += (double)lat[i];
    }
    qsort(lat, measured, sizeof(int64_t), cmp_i64);

    /* cost of the timer itself: two back-to-back reads */
    enum { CLOCK_SAMPLES = 100000 };
    int64_t *clk = malloc(sizeof(int64_t) * CLOCK_SAMPLES);
    if (!clk) die("out of memory");
    for (int i = 0; i < CLOCK_SAMPLES; i++) {
        int64_t t0 = now_ns();
        clk[i] = now_ns() - t0;
    }
    qsort(clk, CLOCK_SAMPLES, sizeof(int64_t), cmp_i64);

    printf("{\"commands\": %zu, \"prefill\": %zu, \"measured\": %zu, \"repeat\": %d, \"warmup\": %d, \"chunk\": %zu,\n",
           n, prefill, measured, repeat, warmup, chunk);
    printf(" \"ops_per_s\": %.0f, \"ops_per_s_best\": %.0f, \"ops_per_s_worst\": %.0f,\n",
           rates[repeat / 2], rates[repeat - 1], rates[0]);
    printf(" \"batch_ops_per_s\": %.0f, \"batch_ops_per_s_best\": %.0f,\n", batch_rates[repeat / 2],
           batch_rates[repeat - 1]);
    printf(" \"latency_ns\": {\"p50\": %lld, \"p90\": %lld, \"p99\": %lld, \"p99.9\": %lld, \"p99.99\": %lld, \"max\": %lld, \"mean\": %.1f},\n",
           (long long)pct(lat, measured, 50), (long long)pct(lat, measured, 90), (long long)pct(lat, measured, 99),
           (long long)pct(lat, measured, 99.9), (long long)pct(lat, measured, 99.99),
           (long long)(measured ? lat[measured - 1] : 0), lat_mean);
    printf(" \"latency_by_kind_ns\": {");
    int first = 1;
    for (int k = 0; k < KINDS; k++) {
        if (!kind_n[k]) continue;
        qsort(by_kind[k], kind_n[k], sizeof(int64_t), cmp_i64);
        printf("%s\"%s\": {\"count\": %zu, \"mean\": %.1f, \"p50\": %lld, \"p99\": %lld}", first ? "" : ", ",
               kinds[k], kind_n[k], kind_sum[k] / (double)kind_n[k], (long long)pct(by_kind[k], kind_n[k], 50),
               (long long)pct(by_kind[k], kind_n[k], 99));
        first = 0;
    }
    printf("},\n");
    for (int k = 0; k < KINDS; k++) free(by_kind[k]);
    printf(" \"latency_pass_ops_per_s\": %.0f,\n", lat_total > 0 ? (double)measured * 1e9 / (double)lat_total : 0.0);
    printf(" \"timer_ns\": {\"p50\": %lld, \"p99\": %lld},\n", (long long)pct(clk, CLOCK_SAMPLES, 50),
           (long long)pct(clk, CLOCK_SAMPLES, 99));
    printf(" \"events\": %zu, \"batch_events\": %zu, \"rejects\": %zu, \"final_orders\": %zu}\n",
           info.events, batch_events, info.rejects, info.final_orders);

    free(clk);
    free(lat);
    free(rates);
    free(batch_rates);
    ob_events_free(&out);
    free(cmds);
    return 0;
}
