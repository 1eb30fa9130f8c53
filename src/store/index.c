/*
 * index.c — the LSM index described in index.h: the active and frozen memtables (memtable.c),
 * the run files (run.c) and the MANIFEST that names them, the background thread that flushes
 * and merges, and lookups across all of them. File layouts are in docs/format.md.
 */
#include "index.h"
#include "memtable.h"

#include "../io/io.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_FROZEN 4
/* Runs of one level merged into one of the next. 8, not 4: each entry is rewritten log8 instead
   of log4 times (a third less index I/O), for at most 7 runs per level to search (docs/bench.md). */
#define MERGE_FANIN 8
#define MAX_RUNS INDEX_MAX_RUNS

static_assert(FENCE_EVERY > 0 && MERGE_FANIN <= MAX_RUNS, "fences and merges fit the run table");

unsigned index_key_bits = 62;

/* The top two bits of a key name its index (0 tag, 1 stream, 2 id, 3 correlation), so keys of
   different indexes never collide; names within one index can, and readers check records.
   Tests narrow the hash to a few bits to make that happen often. */
static inline uint64_t key_finish(uint64_t h, uint64_t kind) {
    return (h & ((1ull << MIN(index_key_bits, 62)) - 1)) | kind << 62;
}

uint64_t index_key_stream(factum_str_t stream) { return key_finish(hash64(stream.ptr, stream.len, 0x53), 1); }

uint64_t index_id_seed(factum_str_t stream) { return hash64(stream.ptr, stream.len, 0x49); }

uint64_t index_key_id_seeded(uint64_t seed, factum_str_t id) { return key_finish(hash64(id.ptr, id.len, seed), 2); }

uint64_t index_key_id(factum_str_t stream, factum_str_t id) { return index_key_id_seeded(index_id_seed(stream), id); }

uint64_t index_key_corr(factum_str_t corr) { return key_finish(hash64(corr.ptr, corr.len, 0x43), 3); }

uint64_t index_key_tag(factum_str_t prefix, factum_str_t rest) {
    uint64_t k = key_finish(hash64(rest.ptr, rest.len, hash64(prefix.ptr, prefix.len, 0x47)), 0);
    return k ? k : 1;
}

/* ---- the index ---- */

struct index {
    char dir[PATH_MAX];
    uint32_t memtable_max;
    pthread_rwlock_t lock; /* active, frozen, runs */
    memtable *active;
    memtable *frozen[MAX_FROZEN]; /* oldest first */
    size_t nfrozen;
    run *runs[MAX_RUNS]; /* by position, oldest first; contiguous from 0 */
    size_t nruns;
    uint32_t next_run_id;
    uint64_t covered;       /* pos_hi of the newest run */
    uint64_t active_pos_lo; /* where the active memtable starts */
    uint64_t flushes, merges;
    int failed; /* the thread could not write a run: the index stays in memory */

    pthread_mutex_t mu; /* thread control */
    pthread_cond_t cond, idle;
    bool stop, busy;
    pthread_t thread;
};

int index_manifest_write(const char *dir, const index_run_info_t *runs, size_t n) {
    buf_t b = {0};
    int rc = buf_printf(&b, "factum-index 1\n");
    for (size_t i = 0; i < n && !rc; i++)
        rc = buf_printf(&b, "run %08x %u %llu %llu %llu\n", runs[i].id, runs[i].level,
                        (unsigned long long)runs[i].pos_lo, (unsigned long long)runs[i].pos_hi,
                        (unsigned long long)runs[i].count);
    if (!rc) rc = buf_printf(&b, "crc %08x\n", crc32c(b.ptr, b.len));
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/MANIFEST", dir);
    if (!rc && io_replace_file(path, b.ptr, b.len, 0644)) rc = -1;
    buf_free(&b);
    return rc;
}

static index_run_info_t run_info(const run *r) {
    return (index_run_info_t){r->id, r->level, r->count, r->pos_lo, r->pos_hi};
}

static int manifest_write(index_t *ix, run *const *runs, size_t n) {
    index_run_info_t info[MAX_RUNS] = {0};
    for (size_t i = 0; i < n; i++)
        info[i] = run_info(runs[i]);
    return index_manifest_write(ix->dir, info, n);
}

size_t index_snapshot(index_t *ix, index_run_info_t *info, int *fds, size_t cap, uint64_t *covered) {
    size_t n = 0;
    pthread_rwlock_rdlock(&ix->lock);
    /* Under the read lock no merge can swap the runs, so none of their files is deleted yet. */
    for (size_t i = 0; i < ix->nruns && n < cap; i++) {
        char path[PATH_MAX];
        run_path(path, ix->dir, ix->runs[i]->id);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) break; /* the runs must cover [0, covered) without a gap: stop at a hole */
        info[n] = run_info(ix->runs[i]), fds[n++] = fd;
    }
    *covered = n ? info[n - 1].pos_hi : 0;
    pthread_rwlock_unlock(&ix->lock);
    return n;
}

/* Loads runs named by the manifest. -1 if anything does not check out. */
static int manifest_load(index_t *ix) {
    char path[PATH_MAX], *text;
    size_t len;
    snprintf(path, sizeof path, "%s/MANIFEST", ix->dir);
    if (io_read_file(path, &text, &len)) return -1;
    char *crcline = strstr(text, "crc ");
    unsigned crc;
    int rc = -1;
    if (!crcline || strncmp(text, "factum-index 1\n", 15) || sscanf(crcline, "crc %x", &crc) != 1 ||
        crc != crc32c(text, (size_t)(crcline - text)))
        goto out;
    *crcline = 0;
    uint64_t expect_lo = 0;
    for (char *line = strchr(text, '\n') + 1; *line; line = strchr(line, '\n') + 1) {
        unsigned id, level;
        unsigned long long lo, hi, count;
        if (sscanf(line, "run %x %u %llu %llu %llu", &id, &level, &lo, &hi, &count) != 5) goto out;
        run *r = ix->nruns < MAX_RUNS ? run_load(ix->dir, id, false) : NULL;
        if (!r) goto out;
        ix->runs[ix->nruns++] = r;
        if (r->pos_lo != lo || r->pos_hi != hi || r->count != count || lo != expect_lo) goto out;
        expect_lo = hi;
        ix->next_run_id = MAX(ix->next_run_id, id + 1);
    }
    ix->covered = expect_lo;
    rc = 0;
out:
    free(text);
    return rc;
}

/* Removes every file in the folder that is not a run the index uses (or all of them). */
static void sweep(index_t *ix, bool all) {
    DIR *d = opendir(ix->dir);
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        unsigned id;
        bool keep = false;
        if (!all && strcmp(de->d_name, "MANIFEST") == 0) keep = true;
        if (!all && sscanf(de->d_name, "run-%x.idx", &id) == 1)
            for (size_t i = 0; i < ix->nruns; i++)
                keep |= ix->runs[i]->id == id;
        if (!keep) unlinkat(dirfd(d), de->d_name, 0);
    }
    closedir(d);
}

static int cmp_entry(const void *a, const void *b) {
    const uint64_t *x = a, *y = b;
    for (int i = 0; i < 3; i++)
        if (x[i] != y[i]) return x[i] < y[i] ? -1 : 1;
    return 0;
}

static int cmp_hit(const void *a, const void *b) {
    const idx_hit *x = a, *y = b;
    if (x->seq != y->seq) return x->seq < y->seq ? -1 : 1;
    return (x->pos > y->pos) - (x->pos < y->pos);
}

/* A slot of the memtable by its key, for sorting. */
typedef struct kslot {
    uint64_t key;
    const mslot *s;
} kslot;

/* Sorts v by key: LSD radix, four 16-bit digits (a flush sorts about 100,000 keys; a
   comparison sort of every entry took a third of a core at a million events a second). */
static int sort_slots(kslot *v, size_t n) {
    kslot *tmp = malloc(MAX(1, n) * sizeof *tmp);
    size_t *count = malloc(65537 * sizeof *count);
    if (!tmp || !count) {
        free(tmp);
        free(count);
        return -1;
    }
    for (int shift = 0; shift < 64; shift += 16) {
        memset(count, 0, 65537 * sizeof *count);
        for (size_t i = 0; i < n; i++)
            count[((v[i].key >> shift) & 0xffff) + 1]++;
        for (size_t d = 0; d < 65536; d++)
            count[d + 1] += count[d];
        for (size_t i = 0; i < n; i++)
            tmp[count[(v[i].key >> shift) & 0xffff]++] = v[i];
        memcpy(v, tmp, n * sizeof *v);
    }
    free(tmp);
    free(count);
    return 0;
}

static int cmp_mname(const void *a, const void *b, void *ctx) {
    const memtable *m = ctx;
    const mname *x = a, *y = b;
    return name_cmp((factum_str_t){m->name_bytes.ptr + x->off, x->len},
                    (factum_str_t){m->name_bytes.ptr + y->off, y->len});
}

/* The memtable's names below its pos_hi, in name order, into the run being written. */
static int flush_names(run_writer *w, const memtable *m) {
    mname *v = malloc(MAX(1, m->nnames) * sizeof *v);
    if (!v) return -1;
    size_t n = 0;
    for (size_t i = 0; i < m->nnames; i++)
        if (m->names[i].pos < m->pos_hi) v[n++] = m->names[i];
    qsort_r(v, n, sizeof *v, cmp_mname, (void *)m);
    for (size_t i = 0; i < n; i++)
        rw_put_name(w, (factum_str_t){m->name_bytes.ptr + v[i].off, v[i].len}, v[i].pos);
    free(v);
    return 0;
}

/* Writes a frozen memtable as a level-0 run: the slots in key order, each slot's hits in (seq,
   pos) order, which is the order they were added in unless two names share the key. */
static run *flush_memtable(index_t *ix, const memtable *m, uint64_t pos_lo) {
    kslot *v = malloc(MAX(1, m->keys) * sizeof *v);
    idx_hit *scratch = NULL;
    size_t scratch_cap = 0, n = 0, entries = 0;
    if (!v) return NULL;
    for (size_t i = 0; i <= m->mask && n < m->keys; i++)
        if (m->slots[i].key) v[n++] = (kslot){m->slots[i].key, &m->slots[i]};
    for (size_t i = 0; i < n; i++) {
        const mslot *s = v[i].s;
        const idx_hit *h = slot_hits((mslot *)s);
        for (uint32_t j = 0; j < s->n; j++)
            entries += h[j].pos < m->pos_hi;
    }
    run *r = NULL;
    run_writer *w = sort_slots(v, n) ? NULL : malloc(sizeof *w);
    uint32_t id = ix->next_run_id++;
    if (w && rw_begin(w, ix->dir, id, entries) == 0) {
        bool ok = true;
        for (size_t i = 0; i < n && ok; i++) {
            const mslot *s = v[i].s;
            const idx_hit *h = slot_hits((mslot *)s);
            bool sorted = true;
            for (uint32_t j = 1; j < s->n && sorted; j++)
                sorted = cmp_hit(&h[j - 1], &h[j]) < 0;
            if (!sorted) {
                if (s->n > scratch_cap) {
                    idx_hit *ns = realloc(scratch, s->n * sizeof *ns);
                    if (!ns) {
                        ok = false;
                        break;
                    }
                    scratch = ns, scratch_cap = s->n;
                }
                memcpy(scratch, h, s->n * sizeof *h);
                qsort(scratch, s->n, sizeof *scratch, cmp_hit);
                h = scratch;
            }
            for (uint32_t j = 0; j < s->n; j++)
                if (h[j].pos < m->pos_hi) rw_put(w, s->key, h[j]);
        }
        if (ok && flush_names(w, m)) ok = false;
        if (!ok)
            rw_abort(w);
        else if (rw_end(w, ix->dir, id, 0, pos_lo, m->pos_hi) == 0)
            r = run_load(ix->dir, id, true);
    }
    free(w);
    free(v);
    free(scratch);
    return r;
}

/* Merges runs[first .. first+n) (adjacent, so their positions stay contiguous). */
static run *merge_runs(index_t *ix, run *const *in, size_t n) {
    uint64_t total = 0;
    size_t cur[MERGE_FANIN] = {0};
    for (size_t i = 0; i < n; i++)
        total += in[i]->count;
    uint32_t id = ix->next_run_id++;
    run_writer *w = malloc(sizeof *w);
    run *r = NULL;
    if (w && rw_begin(w, ix->dir, id, total) == 0) {
        for (;;) {
            int best = -1;
            for (size_t i = 0; i < n; i++) {
                if (cur[i] >= in[i]->count) continue;
                if (best < 0 ||
                    cmp_entry(in[i]->entries + cur[i] * RUN_ENTRY, in[best]->entries + cur[best] * RUN_ENTRY) < 0)
                    best = (int)i;
            }
            if (best < 0) break;
            const run *b = in[best];
            rw_put(w, run_key(b, cur[best]), run_hit(b, cur[best]));
            cur[best]++;
        }
        size_t ncur[MERGE_FANIN] = {0}; /* the names: a merge of sorted lists, as the entries */
        for (;;) {
            int best = -1;
            for (size_t i = 0; i < n; i++) {
                if (ncur[i] >= in[i]->nnames) continue;
                if (best < 0 || name_cmp(run_name(in[i], ncur[i], NULL), run_name(in[best], ncur[best], NULL)) < 0)
                    best = (int)i;
            }
            if (best < 0) break;
            uint64_t pos;
            factum_str_t name = run_name(in[best], ncur[best]++, &pos);
            rw_put_name(w, name, pos);
        }
        if (rw_end(w, ix->dir, id, in[0]->level + 1, in[0]->pos_lo, in[n - 1]->pos_hi) == 0)
            r = run_load(ix->dir, id, true);
    }
    free(w);
    return r;
}

/* Index of the first of MERGE_FANIN adjacent runs of one level, or -1. */
static int merge_candidate(const index_t *ix) {
    for (size_t i = 0; i + MERGE_FANIN <= ix->nruns; i++) {
        bool same = true;
        for (size_t j = 1; j < MERGE_FANIN; j++)
            same &= ix->runs[i + j]->level == ix->runs[i]->level;
        if (same) return (int)i;
    }
    return -1;
}

/* One unit of background work; false if there was none. Runs on the index thread only. */
static bool index_step(index_t *ix) {
    pthread_rwlock_rdlock(&ix->lock);
    /* Flushes come first (they free memory), unless the runs are many: a writer that freezes
       memtables as fast as they are written would otherwise starve the merges until the run
       table overflowed. With half of it used, a merge goes first. */
    int mi = merge_candidate(ix);
    memtable *m = ix->nfrozen && (mi < 0 || ix->nruns < MAX_RUNS / 2) ? ix->frozen[0] : NULL;
    if (m) mi = -1;
    ENSURE(!m || ix->nruns < MAX_RUNS); /* a flush adds a run: there is room for it */
    pthread_rwlock_unlock(&ix->lock);
    if (ix->failed || (!m && mi < 0)) return false;
    run *r = m ? flush_memtable(ix, m, ix->covered) : merge_runs(ix, ix->runs + mi, MERGE_FANIN);
    run *next[MAX_RUNS];
    size_t nn = 0;
    if (r) {
        if (m) {
            memcpy(next, ix->runs, ix->nruns * sizeof *next);
            nn = ix->nruns;
            next[nn++] = r;
        } else {
            for (size_t i = 0; i < ix->nruns; i++) {
                if ((int)i == mi) next[nn++] = r;
                if ((int)i < mi || (int)i >= mi + MERGE_FANIN) next[nn++] = ix->runs[i];
            }
        }
    }
    if (!r || manifest_write(ix, next, nn)) {
        /* Disk trouble: keep serving from memory; the log still has everything. */
        run_free(r);
        ix->failed = 1;
        return false;
    }
    run *old[MERGE_FANIN];
    pthread_rwlock_wrlock(&ix->lock);
    if (m) {
        ENSURE(m->pos_hi >= ix->covered); /* runs cover [0, covered) without gaps or going back */
        memmove(ix->frozen, ix->frozen + 1, --ix->nfrozen * sizeof *ix->frozen);
        ix->covered = m->pos_hi;
        ix->flushes++;
    } else {
        memcpy(old, ix->runs + mi, sizeof old);
        ix->merges++;
    }
    memcpy(ix->runs, next, nn * sizeof *next);
    ix->nruns = nn;
    pthread_rwlock_unlock(&ix->lock);
    if (m)
        mem_free(m);
    else
        for (size_t i = 0; i < MERGE_FANIN; i++) {
            char path[PATH_MAX];
            run_path(path, ix->dir, old[i]->id);
            unlink(path);
            run_free(old[i]);
        }
    return true;
}

static void *index_thread(void *arg) {
    index_t *ix = arg;
    pthread_mutex_lock(&ix->mu);
    for (;;) {
        ix->busy = true;
        pthread_mutex_unlock(&ix->mu);
        bool did = index_step(ix);
        pthread_mutex_lock(&ix->mu);
        if (did) continue;
        ix->busy = false;
        pthread_cond_broadcast(&ix->idle);
        if (ix->stop) break;
        pthread_cond_wait(&ix->cond, &ix->mu);
    }
    pthread_mutex_unlock(&ix->mu);
    return NULL;
}

int index_open(const char *dir, uint32_t memtable_max, index_t **out, factum_error_t *err) {
    index_t *ix = calloc(1, sizeof *ix);
    if (!ix) return err_set(err, FACTUM_ENOMEM, "out of memory opening the index");
    snprintf(ix->dir, sizeof ix->dir, "%s", dir);
    ix->memtable_max = memtable_max;
    int e = io_make_dir(dir);
    if (e) {
        free(ix);
        return err_set(err, FACTUM_EIO, "cannot create %s: %s", dir, strerror(-e));
    }
    if (manifest_load(ix)) {
        for (size_t i = 0; i < ix->nruns; i++)
            run_free(ix->runs[i]);
        ix->nruns = 0, ix->covered = 0, ix->next_run_id = 0;
        sweep(ix, true); /* derived state: start over from the log */
    } else {
        sweep(ix, false);
    }
    ix->active = mem_new();
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&ix->lock, &ra);
    pthread_rwlockattr_destroy(&ra);
    pthread_mutex_init(&ix->mu, NULL);
    pthread_cond_init(&ix->cond, NULL);
    pthread_cond_init(&ix->idle, NULL);
    ix->active_pos_lo = ix->covered;
    if (!ix->active || pthread_create(&ix->thread, NULL, index_thread, ix)) {
        mem_free(ix->active);
        for (size_t i = 0; i < ix->nruns; i++)
            run_free(ix->runs[i]);
        free(ix);
        return err_set(err, FACTUM_ENOMEM, "cannot start the index thread");
    }
    *out = ix;
    return 0;
}

uint64_t index_covered(const index_t *ix) { return ix->covered; }

static void wake(index_t *ix) {
    pthread_mutex_lock(&ix->mu);
    pthread_cond_signal(&ix->cond);
    pthread_mutex_unlock(&ix->mu);
}

void index_quiesce(index_t *ix) {
    pthread_mutex_lock(&ix->mu);
    for (;;) {
        pthread_rwlock_rdlock(&ix->lock);
        bool pending = ix->nfrozen > 0 && !ix->failed;
        pthread_rwlock_unlock(&ix->lock);
        if (!pending && !ix->busy) break;
        pthread_cond_signal(&ix->cond);
        pthread_cond_wait(&ix->idle, &ix->mu);
    }
    pthread_mutex_unlock(&ix->mu);
}

/* Freezes the active memtable at pos_hi; the write lock must be held. */
static bool freeze(index_t *ix, uint64_t pos_hi) {
    if (ix->nfrozen == MAX_FROZEN) return false; /* the thread is behind: keep filling */
    memtable *fresh = mem_new();
    if (!fresh) return false;
    ENSURE(pos_hi >= ix->active_pos_lo); /* memtables cover contiguous, growing positions */
    ix->active->pos_hi = pos_hi;
    ix->frozen[ix->nfrozen++] = ix->active;
    ix->active = fresh;
    ix->active_pos_lo = pos_hi;
    return true;
}

void index_maybe_rotate(index_t *ix, uint64_t durable) {
    if (ix->active->entries < ix->memtable_max) return;
    pthread_rwlock_wrlock(&ix->lock);
    bool frozen = freeze(ix, durable);
    pthread_rwlock_unlock(&ix->lock);
    if (frozen) wake(ix);
}

void index_close(index_t *ix, uint64_t flush_below) {
    if (!ix) return;
    /* Write what the memtable holds, so the next open need not replay it. If the index
       thread failed (disk trouble), skip it: the next open replays the log instead. */
    while (flush_below > ix->active_pos_lo && ix->active->entries && !ix->failed) {
        pthread_rwlock_wrlock(&ix->lock);
        bool frozen = freeze(ix, flush_below);
        pthread_rwlock_unlock(&ix->lock);
        if (frozen) break;
        index_quiesce(ix); /* all frozen slots taken: let the thread drain them */
    }
    index_quiesce(ix);
    pthread_mutex_lock(&ix->mu);
    ix->stop = true;
    pthread_cond_signal(&ix->cond);
    pthread_mutex_unlock(&ix->mu);
    pthread_join(ix->thread, NULL);
    mem_free(ix->active);
    for (size_t i = 0; i < ix->nfrozen; i++)
        mem_free(ix->frozen[i]);
    for (size_t i = 0; i < ix->nruns; i++)
        run_free(ix->runs[i]);
    pthread_rwlock_destroy(&ix->lock);
    pthread_mutex_destroy(&ix->mu);
    pthread_cond_destroy(&ix->cond);
    pthread_cond_destroy(&ix->idle);
    free(ix);
}

void index_write_lock(index_t *ix) { pthread_rwlock_wrlock(&ix->lock); }
void index_write_unlock(index_t *ix) { pthread_rwlock_unlock(&ix->lock); }

int index_add(index_t *ix, uint64_t key, uint64_t seq, uint64_t pos) {
    return mem_add(ix->active, key, (idx_hit){seq, pos});
}

void index_prefetch(index_t *ix, uint64_t key) {
    const memtable *m = ix->active;
    __builtin_prefetch(&m->slots[key & m->mask], 1);
}

static int cmp_fwd(const void *a, const void *b) { return hit_cmp(*(const idx_hit *)a, *(const idx_hit *)b); }
static int cmp_bwd(const void *a, const void *b) { return hit_cmp(*(const idx_hit *)b, *(const idx_hit *)a); }

size_t index_range(index_t *ix, uint64_t key, idx_hit from, bool backward, size_t max, uint64_t pos_limit,
                   idx_hit *out) {
    if (!max) return 0;
    /* Each source gives up to max in order; together they are sorted and cut to max. The
       sources hold disjoint positions, so nothing repeats. */
    size_t cap = max * 4, n = 0;
    idx_hit stackbuf[256];
    idx_hit *all = cap <= 256 ? stackbuf : malloc(cap * sizeof *all);
    if (!all) return 0;
    pthread_rwlock_rdlock(&ix->lock);
    size_t nsrc = 1 + ix->nfrozen + ix->nruns;
    for (size_t s = 0; s < nsrc; s++) {
        if (n + max > cap) {
            qsort(all, n, sizeof *all, backward ? cmp_bwd : cmp_fwd);
            n = MIN(n, max);
        }
        if (s == 0)
            n += mem_range(ix->active, key, from, backward, max, pos_limit, all + n);
        else if (s <= ix->nfrozen)
            n += mem_range(ix->frozen[s - 1], key, from, backward, max, pos_limit, all + n);
        else
            n += run_range(ix->runs[s - 1 - ix->nfrozen], key, from, backward, max, pos_limit, all + n);
    }
    pthread_rwlock_unlock(&ix->lock);
    qsort(all, n, sizeof *all, backward ? cmp_bwd : cmp_fwd);
    n = MIN(n, max);
    memcpy(out, all, n * sizeof *out);
    if (all != stackbuf) free(all);
    return n;
}

int index_add_name(index_t *ix, factum_str_t name, uint64_t pos) { return mem_add_name(ix->active, name, pos); }

uint64_t index_name_count(index_t *ix) {
    pthread_rwlock_rdlock(&ix->lock);
    uint64_t n = ix->active->nnames;
    for (size_t i = 0; i < ix->nfrozen; i++)
        n += ix->frozen[i]->nnames;
    for (size_t i = 0; i < ix->nruns; i++)
        n += ix->runs[i]->nnames;
    pthread_rwlock_unlock(&ix->lock);
    return n;
}

/* The k smallest names offered so far: a max-heap, its largest at v[0]. */
typedef struct name_heap {
    index_name *v;
    size_t n, k;
} name_heap;

/* False when the heap is full and name is not smaller than all it holds. */
static bool heap_offer(name_heap *h, factum_str_t name, uint64_t pos) {
    size_t i;
    if (h->n < h->k) {
        for (i = h->n++; i > 0 && name_cmp(h->v[(i - 1) / 2].name, name) < 0; i = (i - 1) / 2)
            h->v[i] = h->v[(i - 1) / 2];
    } else if (h->k && name_cmp(name, h->v[0].name) < 0) {
        for (i = 0;;) {
            size_t c = 2 * i + 1;
            if (c >= h->n) break;
            if (c + 1 < h->n && name_cmp(h->v[c + 1].name, h->v[c].name) > 0) c++;
            if (name_cmp(h->v[c].name, name) <= 0) break;
            h->v[i] = h->v[c], i = c;
        }
    } else {
        return false;
    }
    h->v[i] = (index_name){name, pos};
    return true;
}

/* Where the walk starts: past `after`, or at `prefix` if that is further. */
typedef struct name_from {
    factum_str_t at, prefix;
    bool strict;
    uint64_t pos_limit;
} name_from;

static inline bool name_wanted(const name_from *f, factum_str_t name) {
    int c = name_cmp(name, f->at);
    return (c > 0 || (c == 0 && !f->strict)) && name_has_prefix(name, f->prefix);
}

static int cmp_uname(const void *a, const void *b, void *ctx) {
    const memtable *m = ctx;
    return name_cmp(mem_name(m, *(const uint32_t *)a), mem_name(m, *(const uint32_t *)b));
}

/* Brings the sorted view up to date when its unsorted tail is long; sort_mu held. */
static void mem_sort_names(memtable *m) {
    size_t tail = m->nnames - m->nsorted;
    if (tail < 256) return; /* a short tail is cheaper to scan */
    uint32_t *v = malloc(m->nnames * sizeof *v), *t = malloc(tail * sizeof *t);
    if (!v || !t) {
        free(v);
        free(t);
        return;
    }
    for (size_t i = 0; i < tail; i++)
        t[i] = (uint32_t)(m->nsorted + i);
    qsort_r(t, tail, sizeof *t, cmp_uname, m);
    size_t a = 0, b = 0, n = 0;
    while (a < m->nsorted || b < tail)
        v[n++] = b == tail || (a < m->nsorted && name_cmp(mem_name(m, m->sorted[a]), mem_name(m, t[b])) < 0)
                     ? m->sorted[a++]
                     : t[b++];
    free(m->sorted);
    free(t);
    m->sorted = v, m->nsorted = n;
}

static void mem_names(memtable *m, const name_from *f, name_heap *h) {
    pthread_mutex_lock(&m->sort_mu);
    mem_sort_names(m);
    size_t lo = 0, hi = m->nsorted;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = name_cmp(mem_name(m, m->sorted[mid]), f->at);
        if (c < 0 || (f->strict && c == 0))
            lo = mid + 1;
        else
            hi = mid;
    }
    uint64_t limit = m->pos_hi ? MIN(m->pos_hi, f->pos_limit) : f->pos_limit;
    for (size_t i = lo; i < m->nsorted; i++) {
        factum_str_t name = mem_name(m, m->sorted[i]);
        uint64_t pos = m->names[m->sorted[i]].pos;
        if (!name_has_prefix(name, f->prefix)) break;
        if (pos < limit && !heap_offer(h, name, pos)) break;
    }
    for (size_t i = m->nsorted; i < m->nnames; i++)
        if (m->names[i].pos < limit && name_wanted(f, mem_name(m, i))) heap_offer(h, mem_name(m, i), m->names[i].pos);
    pthread_mutex_unlock(&m->sort_mu);
}

static void run_names(const run *r, const name_from *f, name_heap *h) {
    for (size_t i = run_name_bound(r, f->at, f->strict); i < r->nnames; i++) {
        uint64_t pos;
        factum_str_t name = run_name(r, i, &pos);
        if (!name_has_prefix(name, f->prefix)) break;
        if (pos < f->pos_limit && !heap_offer(h, name, pos)) break;
    }
}

static int cmp_index_name(const void *a, const void *b) {
    return name_cmp(((const index_name *)a)->name, ((const index_name *)b)->name);
}

size_t index_names(index_t *ix, factum_str_t prefix, factum_str_t after, uint64_t pos_limit, size_t max, buf_t *bytes,
                   index_name *out) {
    name_from f = {prefix, prefix, false, pos_limit};
    if (after.len && name_cmp(after, prefix) >= 0) f.at = after, f.strict = true;
    name_heap h = {out, 0, max};
    pthread_rwlock_rdlock(&ix->lock);
    mem_names(ix->active, &f, &h);
    for (size_t i = 0; i < ix->nfrozen; i++)
        mem_names(ix->frozen[i], &f, &h);
    for (size_t i = 0; i < ix->nruns; i++)
        run_names(ix->runs[i], &f, &h);
    /* Copy the names out while the sources are still there; point into the copy after. */
    size_t *off = malloc(MAX(1, h.n) * sizeof *off), n = h.n;
    for (size_t i = 0; i < h.n && off; i++) {
        off[i] = bytes->len;
        if (buf_append(bytes, out[i].name.ptr, out[i].name.len)) n = 0;
    }
    pthread_rwlock_unlock(&ix->lock);
    if (!off) n = 0;
    for (size_t i = 0; i < n; i++)
        out[i].name.ptr = bytes->ptr + off[i];
    free(off);
    qsort(out, n, sizeof *out, cmp_index_name);
    return n;
}

void index_stats(index_t *ix, index_stats_t *st) {
    pthread_rwlock_rdlock(&ix->lock);
    *st = (index_stats_t){ix->nruns, 1 + ix->nfrozen, 0, ix->active->entries, ix->flushes, ix->merges};
    for (size_t i = 0; i < ix->nruns; i++)
        st->run_entries += ix->runs[i]->count;
    for (size_t i = 0; i < ix->nfrozen; i++)
        st->mem_entries += ix->frozen[i]->entries;
    pthread_rwlock_unlock(&ix->lock);
}

/* ---- a read-only look for factum check (check.c) ---- */

int index_walk_runs(const char *dir, uint64_t *covered, index_entry_fn fn, index_name_fn name_fn, void *ctx,
                    factum_error_t *err) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/MANIFEST", dir);
    if (access(path, F_OK)) {
        if (errno == ENOENT) return err_set(err, FACTUM_ENOTFOUND, "%s is missing", path);
        return err_set(err, FACTUM_EIO, "cannot read %s: %s", path, strerror(errno));
    }
    index_t *ix = calloc(1, sizeof *ix); /* only dir and runs are used: no lock, no thread */
    if (!ix) return err_set(err, FACTUM_ENOMEM, "out of memory reading the index");
    snprintf(ix->dir, sizeof ix->dir, "%s", dir);
    int rc = 0;
    if (manifest_load(ix)) {
        rc = err_set(err, FACTUM_ECORRUPT,
                     "%s does not check out (its checksum or a line, or a run file it names: missing, damaged, or "
                     "not the positions and count it says)",
                     path);
    }
    if (!rc) *covered = ix->covered;
    for (size_t i = 0; i < ix->nruns && !rc; i++) {
        const run *r = ix->runs[i];
        index_run_info_t info = {r->id, r->level, r->count, r->pos_lo, r->pos_hi};
        for (uint64_t j = 0; j < r->count && !rc; j++) {
            uint64_t key = run_key(r, j);
            /* A lookup finds the entry only through its bloom block and the fence before it. */
            bool found = run_may_have(r, key) && (j % FENCE_EVERY || r->fences[j / FENCE_EVERY] == key);
            rc = fn(ctx, &info, j, key, run_hit(r, j), found);
        }
        for (uint64_t j = 0; j < r->nnames && !rc; j++) {
            uint64_t pos;
            factum_str_t name = run_name(r, j, &pos);
            rc = name_fn(ctx, &info, j, name, pos);
        }
    }
    for (size_t i = 0; i < ix->nruns; i++)
        run_free(ix->runs[i]);
    free(ix);
    return rc;
}
