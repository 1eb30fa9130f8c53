/*
 * test_powercut.c — a power cut under load, as a careful operator would try it. The data folder
 * lives on a loop-mounted ext4 image. Concurrent HTTP clients append single events and batches
 * with explicit ids to a few streams and note every 201 they receive. At a random moment the
 * file system is shut down with EXT4_IOC_SHUTDOWN and EXT4_GOING_FLAGS_NOLOGFLUSH (what the
 * journal has not committed is gone, as in a power cut), the server is killed, the image is
 * unmounted and mounted again, and the server restarted. Every acknowledgement received before
 * the shutdown call was issued — in this cycle or any before it — must be found at the position
 * and revision it named, once, with its data intact; a server that refuses to start is a
 * failure that shows what it said.
 *
 * Cycles: FACTUM_POWERCUT_CYCLES (default 20); `make powercut` runs 200. It needs root (mount,
 * loop devices, the shutdown ioctl). When the kernel or the machine refuses, the test prints
 * "skipped: REASON" and ends as skipped (test_skip): the runner shows "skip", never "ok".
 *
 * The work runs in a child process; the test's own process only waits and then cleans up
 * (kills the server, unmounts, detaches the loop device) however the child ended, also on the
 * time limit. Everything lives under one fixed, locked folder (PC_BASE), so that a run killed
 * from outside is cleaned up by the next one. After a failure the image is kept there for
 * inspection until the next run.
 */
#include "test_server.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef EXT4_IOC_SHUTDOWN
#define EXT4_IOC_SHUTDOWN _IOR('X', 125, uint32_t)
#endif
#define EXT4_GOING_FLAGS_NOLOGFLUSH 0x2 /* shut down without flushing the journal */

#define PC_BASE "/tmp/factum-powercut"
#define PC_LOCK PC_BASE "/lock"
#define PC_IMG PC_BASE "/ext4.img"
#define PC_MNT PC_BASE "/mnt"
#define PC_DATA PC_MNT "/data"
#define PC_SERVER_LOG PC_BASE "/server.stderr" /* every start's stderr, appended */
#define PC_SBIN "PATH=/usr/sbin:/sbin:$PATH "
#define PC_IMAGE_MIB 4096          /* sparse: only what is written takes disk (200 cycles write ~1 GiB) */
#define PC_SEGMENT_BYTES "1048576" /* small segments: cuts fall on rollovers too */
#define PC_DEFAULT_CYCLES 20
#define PC_SKIP 77 /* the worker's exit status for "skipped" */

#define CLIENTS 6
#define STREAMS 4
#define BATCH 5
#define ID_MAX 40
#define DATA_MAX 512

/* Shared between the test's process and its worker: what the cleanup must stop. */
typedef struct {
    _Atomic pid_t server;
} pc_shared;
static pc_shared *shared;

typedef struct {
    char id[ID_MAX];
    uint16_t cycle;
    uint8_t stream;
    uint8_t batch_index; /* 0: a single event; 1..BATCH: its place in a batch */
    uint64_t revision, position;
} ack;

/* The acknowledgements of every cycle so far; only those received before the cut are kept. */
static pthread_mutex_t acks_mu = PTHREAD_MUTEX_INITIALIZER;
static ack *acks;
static size_t nacks, capacks;
static _Atomic bool clients_stop, cutting;
static _Atomic size_t answered_after_cut; /* answers other than 201/200 once the cut began */
static char unexpected[600];              /* the first odd answer before the cut */

/* ---- helpers: shell, mounts, loop devices ---- */

static int sh(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int sh(char *out, size_t cap, const char *fmt, ...) {
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    char buf[2048];
    if (!out) out = buf, cap = sizeof buf;
    int st = test_run(cmd, out, cap);
    size_t n = strlen(out);
    while (n && (out[n - 1] == '\n' || out[n - 1] == ' '))
        out[--n] = 0;
    return st;
}

static bool is_mounted(const char *path) {
    FILE *f = fopen("/proc/self/mountinfo", "r");
    if (!f) return false;
    char line[4096], mnt[4096];
    bool found = false;
    while (!found && fgets(line, sizeof line, f))
        found = sscanf(line, "%*s %*s %*s %*s %4095s", mnt) == 1 && !strcmp(mnt, path);
    fclose(f);
    return found;
}

/* Unmounts PC_MNT (retrying while something lets go of it; lazily as a last resort). */
static void pc_unmount(void) {
    for (int i = 0; i < 50 && is_mounted(PC_MNT); i++) {
        if (!umount2(PC_MNT, 0)) return;
        usleep(100000);
    }
    if (is_mounted(PC_MNT)) umount2(PC_MNT, MNT_DETACH);
}

/* Detaches every loop device still backed by the image. */
static void pc_detach_loops(void) {
    char out[2048];
    if (access(PC_IMG, F_OK) || sh(out, sizeof out, PC_SBIN "losetup -j %s 2>/dev/null", PC_IMG)) return;
    for (char *l = strtok(out, "\n"); l; l = strtok(NULL, "\n")) {
        char *colon = strchr(l, ':');
        if (!colon || strncmp(l, "/dev/loop", 9)) continue;
        *colon = 0;
        sh(NULL, 0, PC_SBIN "losetup -d %s 2>&1", l);
    }
}

static int pc_mount(char *why, size_t cap) {
    int st = sh(why, cap, PC_SBIN "mount -t ext4 -o loop %s %s 2>&1", PC_IMG, PC_MNT);
    return st ? -1 : 0;
}

/* ---- the events: ids and data that tell their own story ---- */

static size_t event_data(const char *id, char *out) {
    uint64_t h = hash64(id, strlen(id), 11);
    size_t pad = (size_t)(h % 400), n = (size_t)snprintf(out, DATA_MAX, "{\"id\":\"%s\",\"pad\":\"", id);
    for (size_t i = 0; i < pad; i++)
        out[n++] = (char)('a' + ((h >> (i % 57)) + i) % 26);
    n += (size_t)snprintf(out + n, DATA_MAX - n, "\"}");
    return n;
}

/* ---- the server: started with its stderr kept, so a refusal can be shown ---- */

typedef struct {
    pid_t pid;
    int port, out_fd;
} pc_server;

/* Appends the server's stderr since `from` to msg. */
static void server_log_since(long from, char *msg, size_t cap) {
    msg[0] = 0;
    FILE *f = fopen(PC_SERVER_LOG, "r");
    if (!f) return;
    fseek(f, from, SEEK_SET);
    size_t n = fread(msg, 1, cap - 1, f);
    msg[n] = 0;
    fclose(f);
    while (n && msg[n - 1] == '\n')
        msg[--n] = 0;
}

static long server_log_size(void) {
    struct stat st;
    return stat(PC_SERVER_LOG, &st) ? 0 : (long)st.st_size;
}

/* 0 and a listening server, or -1 with why it did not start (its exit status and stderr). */
static int server_start(pc_server *s, char *why, size_t cap) {
    long log_from = server_log_size();
    int p[2];
    CHECK(pipe(p) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int err = open(PC_SERVER_LOG, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(p[1], 1);
        if (err >= 0) dup2(err, 2);
        close(p[0]);
        close(p[1]);
        execl(test_bin(), test_bin(), "--data-dir", PC_DATA, "serve", "--listen", "127.0.0.1:0", "--segment-bytes",
              PC_SEGMENT_BYTES, (char *)NULL);
        _exit(127);
    }
    shared->server = pid;
    close(p[1]);
    char line[256];
    size_t len = 0;
    for (;;) {
        struct pollfd pfd = {p[0], POLLIN, 0};
        if (poll(&pfd, 1, 60000) != 1) {
            kill(pid, SIGKILL);
            snprintf(line, sizeof line, "no answer within 60 s");
            break;
        }
        if (read(p[0], line + len, 1) != 1) {
            line[len] = 0;
            break;
        }
        if (line[len] == '\n' || len == sizeof line - 2) {
            line[len + 1] = 0;
            const char *colon = strrchr(line, ':');
            if (strstr(line, "listening on http://") && colon) {
                *s = (pc_server){pid, atoi(colon + 1), p[0]};
                return 0;
            }
            break;
        }
        len++;
    }
    int st = 0;
    waitpid(pid, &st, 0);
    shared->server = 0;
    close(p[0]);
    char log[1500];
    server_log_since(log_from, log, sizeof log);
    snprintf(why, cap, "%s %d; stdout \"%.*s\"; stderr:\n%s", WIFEXITED(st) ? "exit status" : "killed by signal",
             WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), (int)strcspn(line, "\n"), line, log);
    return -1;
}

static int server_stop(pc_server *s, int sig) {
    int st = 0;
    kill(s->pid, sig);
    waitpid(s->pid, &st, 0);
    shared->server = 0;
    close(s->out_fd);
    s->pid = 0;
    return st;
}

/* ---- the clients ---- */

typedef struct {
    int port, cycle, thread;
    uint64_t rng;
} client_arg;

static uint64_t next_rand(uint64_t *x) {
    *x = *x * 6364136223846793005u + 1442695040888963407u;
    return *x >> 33;
}

static void note_unexpected(const char *what, int status, const char *body) {
    pthread_mutex_lock(&acks_mu);
    if (!unexpected[0])
        snprintf(unexpected, sizeof unexpected, "%s answered %d: %.400s", what, status, body ? body : "");
    pthread_mutex_unlock(&acks_mu);
}

static void *client(void *p) {
    client_arg *c = p;
    int fd = http_connect(c->port);
    static const char head_fmt[] = "POST /streams/pc-%u HTTP/1.1\r\nHost: localhost\r\nContent-Type: %s\r\n"
                                   "Content-Length: %zu\r\n\r\n";
    for (uint64_t seq = 0; !clients_stop; seq++) {
        uint32_t stream = (uint32_t)(next_rand(&c->rng) % STREAMS);
        int n = next_rand(&c->rng) % 3 == 0 ? BATCH : 1;
        char ids[BATCH][ID_MAX], body[BATCH * (DATA_MAX + 128)], data[DATA_MAX], req[sizeof body + 256];
        size_t bl = 0;
        if (n > 1) body[bl++] = '[';
        for (int i = 0; i < n; i++) {
            snprintf(ids[i], ID_MAX, "k%d-c%d-%" PRIu64 "-%d", c->cycle, c->thread, seq, i);
            event_data(ids[i], data);
            bl += (size_t)snprintf(body + bl, sizeof body - bl, "%s{\"type\":\"PowerCut\",\"id\":\"%s\",\"data\":%s}",
                                   i ? "," : "", ids[i], data);
        }
        if (n > 1) body[bl++] = ']';
        body[bl] = 0;
        int hl = snprintf(req, sizeof req, head_fmt, stream,
                          n > 1 ? "application/cloudevents-batch+json" : "application/cloudevents+json", bl);
        memcpy(req + hl, body, bl);
        http_send(fd, req, (size_t)hl + bl);
        resp r;
        http_recv(fd, &r);
        if (r.status == 0) { /* the server is gone */
            resp_free(&r);
            break;
        }
        if (r.status == 201 || r.status == 200) {
            unsigned s = 0;
            uint64_t fr, rv, fp, ps;
            bool ok = sscanf(r.body,
                             "{\"stream\":\"pc-%u\",\"first_revision\":%" SCNu64 ",\"revision\":%" SCNu64
                             ",\"first_position\":%" SCNu64 ",\"position\":%" SCNu64,
                             &s, &fr, &rv, &fp, &ps) == 5 &&
                      s == stream && rv - fr == (uint64_t)n - 1 && ps - fp == (uint64_t)n - 1;
            if (!ok)
                note_unexpected("an append (its answer does not match it)", r.status, r.body);
            else {
                pthread_mutex_lock(&acks_mu);
                if (nacks + BATCH > capacks)
                    acks = realloc(acks, (capacks = capacks ? capacks * 2 : 4096) * sizeof *acks);
                for (int i = 0; i < n; i++) {
                    ack *a = &acks[nacks++];
                    *a = (ack){.cycle = (uint16_t)c->cycle,
                               .stream = (uint8_t)stream,
                               .batch_index = (uint8_t)(n > 1 ? i + 1 : 0),
                               .revision = fr + (uint64_t)i,
                               .position = fp + (uint64_t)i};
                    snprintf(a->id, sizeof a->id, "%s", ids[i]);
                }
                pthread_mutex_unlock(&acks_mu);
            }
        } else if (cutting) {
            answered_after_cut++; /* the writer stopped (503): nothing more to learn here */
            r.closed = true;
        } else
            note_unexpected("an append", r.status, r.body);
        bool closed = r.closed;
        resp_free(&r);
        if (closed) break;
    }
    close(fd);
    return NULL;
}

/* ---- reading the log back and comparing it with the acknowledgements ---- */

typedef struct {
    char id[ID_MAX];
    uint64_t revision;
    int stream; /* -1: not one of ours */
    bool present, data_ok;
} slot;

typedef struct {
    uint64_t hash, position;
} id_at;

static int cmp_id_at(const void *a, const void *b) {
    const id_at *x = a, *y = b;
    return x->hash != y->hash ? (x->hash < y->hash ? -1 : 1)
                              : (x->position > y->position) - (x->position < y->position);
}

static const char *json_str(const char *line, const char *key, char *out, size_t cap) {
    out[0] = 0;
    const char *p = strstr(line, key);
    if (!p) return NULL;
    p += strlen(key);
    size_t n = strcspn(p, "\"");
    snprintf(out, cap, "%.*s", (int)MIN(n, cap - 1), p);
    return out;
}

/* Reads the whole of /all into a table by position; fails the test if the server does not
   answer as documented. */
static slot *read_log(int port, uint64_t *head_out) {
    size_t cap = 1024;
    slot *log = calloc(cap, sizeof *log);
    uint64_t from = 0, head = 0;
    for (;;) {
        char path[96];
        snprintf(path, sizeof path, "/all?from=%" PRIu64 "&limit=10000", from);
        resp r;
        http_do(port, "GET", path, NULL, NULL, &r);
        CHECK_MSG(r.status == 200, "GET %s answered %d: %s", path, r.status, r.body ? r.body : "");
        char h[32];
        head = strtoull(resp_header(&r, "factum-head", h, sizeof h), NULL, 10);
        size_t events = 0;
        for (char *line = strtok(r.body, "\n"); line; line = strtok(NULL, "\n")) {
            if (line[0] != '{') continue;
            char id[ID_MAX], stream[300];
            const char *pos = strstr(line, "\"position\":"), *rev = strstr(line, "\"revision\":"),
                       *data = strstr(line, "\"data\":");
            CHECK_MSG(json_str(line, "\"id\":\"", id, sizeof id) &&
                          json_str(line, "\"stream\":\"", stream, sizeof stream) && pos && rev,
                      "an event without id, stream, revision or position: %.300s", line);
            uint64_t p = strtoull(pos + 11, NULL, 10);
            while (p >= cap) {
                log = realloc(log, cap * 2 * sizeof *log);
                memset(log + cap, 0, cap * sizeof *log);
                cap *= 2;
            }
            slot *s = &log[p];
            *s = (slot){.revision = strtoull(rev + 11, NULL, 10), .present = true, .stream = -1};
            snprintf(s->id, sizeof s->id, "%s", id);
            if (!strncmp(stream, "pc-", 3)) s->stream = atoi(stream + 3);
            if (data) {
                char want[DATA_MAX];
                size_t wl = event_data(id, want), have = strlen(data + 7);
                while (have && (data[7 + have - 1] == ',' || data[7 + have - 1] == '\r'))
                    have--;
                s->data_ok = have == wl + 1 && !memcmp(data + 7, want, wl) && data[7 + wl] == '}';
            }
            from = p + 1;
            events++;
        }
        resp_free(&r);
        if (!events || from >= head) break;
    }
    if (cap < head + 1) { /* positions the pages did not show stay absent */
        log = realloc(log, (head + 1) * sizeof *log);
        memset(log + cap, 0, (head + 1 - cap) * sizeof *log);
    }
    *head_out = head;
    return log;
}

typedef struct {
    size_t lost, duplicated, damaged;
} verdict;

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* The lost positions as ranges ("3177-3190 4001"), and how many each cycle had acknowledged. */
static void report_lost(int cycle, uint64_t *lost, size_t n, const uint16_t *lost_cycle) {
    qsort(lost, n, sizeof *lost, cmp_u64);
    fprintf(stderr, "    after cut %d: lost positions:", cycle);
    size_t ranges = 0;
    for (size_t i = 0; i < n && ranges < 30; ranges++) {
        size_t j = i;
        while (j + 1 < n && lost[j + 1] == lost[j] + 1)
            j++;
        if (j > i)
            fprintf(stderr, " %" PRIu64 "-%" PRIu64, lost[i], lost[j]);
        else
            fprintf(stderr, " %" PRIu64, lost[i]);
        i = j + 1;
    }
    fprintf(stderr,
            "%s\n    after cut %d: lost events by the cycle that acknowledged them:", ranges == 30 ? " ..." : "",
            cycle);
    for (int k = 0; k < cycle; k++) {
        size_t c = 0;
        for (size_t i = 0; i < n; i++)
            c += lost_cycle[i] == k;
        if (c) fprintf(stderr, " cycle %d: %zu;", k, c);
    }
    fprintf(stderr, "\n");
}

/* Every acknowledged event at its position, once, intact; details of the first few that are
   not go to stderr. */
static verdict check_log(int port, int cycle, uint64_t *head_out) {
    uint64_t head;
    slot *log = read_log(port, &head);
    *head_out = head;
    verdict v = {0};
    uint64_t *lost = malloc((nacks + 1) * sizeof *lost);
    uint16_t *lost_cycle = malloc((nacks + 1) * sizeof *lost_cycle);
    for (size_t k = 0; k < nacks; k++) {
        const ack *a = &acks[k];
        const slot *s = a->position < head ? &log[a->position] : NULL;
        if (s && s->present && !strcmp(s->id, a->id) && s->stream == a->stream && s->revision == a->revision) continue;
        lost[v.lost] = a->position, lost_cycle[v.lost] = a->cycle;
        if (v.lost++ < 10) {
            char there[160], what[32];
            if (!s || !s->present)
                snprintf(there, sizeof there, "nothing (head %" PRIu64 ")", head);
            else
                snprintf(there, sizeof there, "%s of pc-%d at revision %" PRIu64, s->id, s->stream, s->revision);
            if (a->batch_index)
                snprintf(what, sizeof what, "event %u of a batch of %d", a->batch_index, BATCH);
            else
                snprintf(what, sizeof what, "a single event");
            fprintf(stderr,
                    "    after cut %d: LOST %s (acknowledged in cycle %u, %s, pc-%u revision %" PRIu64
                    " position %" PRIu64 "); that position holds %s\n",
                    cycle, a->id, a->cycle, what, a->stream, a->revision, a->position, there);
        }
    }
    if (v.lost) report_lost(cycle, lost, v.lost, lost_cycle);
    free(lost);
    free(lost_cycle);
    id_at *ids = malloc((head + 1) * sizeof *ids);
    size_t n = 0;
    for (uint64_t p = 0; p < head; p++) {
        const slot *s = &log[p];
        if (!s->present || s->stream < 0) continue;
        if (!s->data_ok && v.damaged++ < 20)
            fprintf(stderr, "    after cut %d: DAMAGED data of %s at position %" PRIu64 "\n", cycle, s->id, p);
        ids[n++] = (id_at){hash64(s->id, strlen(s->id), 3), p};
    }
    qsort(ids, n, sizeof *ids, cmp_id_at);
    for (size_t i = 1; i < n; i++) {
        if (ids[i].hash != ids[i - 1].hash || strcmp(log[ids[i].position].id, log[ids[i - 1].position].id)) continue;
        if (v.duplicated++ < 20)
            fprintf(stderr, "    after cut %d: DUPLICATE %s at positions %" PRIu64 " and %" PRIu64 "\n", cycle,
                    log[ids[i].position].id, ids[i - 1].position, ids[i].position);
    }
    free(ids);
    free(log);
    return v;
}

/* ---- the run ---- */

static int env_cycles(void) {
    const char *e = getenv("FACTUM_POWERCUT_CYCLES");
    int n = e ? atoi(e) : PC_DEFAULT_CYCLES;
    return n > 0 ? n : PC_DEFAULT_CYCLES;
}

_Noreturn static void skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
_Noreturn static void skip(const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    printf("skipped: %s\n", msg);
    fflush(stdout);
    _exit(PC_SKIP);
}

/* The image, the mount, and one shutdown on the empty file system to learn that the kernel
   allows it; anything refused here is the machine's limit, so the test is skipped. */
static void prepare_image(void) {
    char out[2048];
    if (sh(out, sizeof out, PC_SBIN "command -v mkfs.ext4 && command -v losetup && command -v mount"))
        skip("mkfs.ext4, losetup or mount is not installed");
    CHECK(truncate(PC_IMG, 0) == 0 || errno == ENOENT);
    if (sh(out, sizeof out, "truncate -s %dM %s 2>&1 && " PC_SBIN "mkfs.ext4 -q -F %s 2>&1", PC_IMAGE_MIB, PC_IMG,
           PC_IMG))
        skip("cannot make an ext4 image: %s", out);
    if (pc_mount(out, sizeof out)) skip("mount -o loop refused: %s", out);
    int fd = open(PC_MNT, O_RDONLY | O_DIRECTORY);
    CHECK(fd >= 0);
    uint32_t flags = EXT4_GOING_FLAGS_NOLOGFLUSH;
    if (ioctl(fd, EXT4_IOC_SHUTDOWN, &flags)) skip("the kernel refuses EXT4_IOC_SHUTDOWN: %s", strerror(errno));
    close(fd);
    pc_unmount();
    if (pc_mount(out, sizeof out)) skip("mount after a shutdown refused: %s", out);
}

static void worker(int cycles) {
    prepare_image();
    uint64_t t0 = clock_mono_ns();
    size_t batched = 0, answered_other = 0;
    verdict total = {0};
    for (int cycle = 0;; cycle++) {
        char why[2048];
        pc_server s;
        if (server_start(&s, why, sizeof why)) {
            fprintf(stderr, "    power cut: %d cycles, %zu events acknowledged, server REFUSED to start\n", cycle,
                    nacks);
            test_fail(__FILE__, __LINE__, "after cut %d the server refused to start: %s", cycle, why);
        }
        if (cycle > 0) {
            uint64_t head, t_check = clock_mono_ns();
            verdict v = check_log(s.port, cycle, &head);
            if (getenv("FACTUM_TEST_VERBOSE"))
                fprintf(stderr, "    cut %d: %zu acknowledged so far, head %" PRIu64 ", checked in %.2f s\n", cycle,
                        nacks, head, (double)(clock_mono_ns() - t_check) / 1e9);
            if (v.lost || v.duplicated || v.damaged) {
                char log[2000];
                server_log_since(MAX(0, server_log_size() - (long)sizeof log + 1), log, sizeof log);
                fprintf(stderr, "    the end of the server's stderr (the cycle cut, and the restart):\n%s\n", log);
                fprintf(stderr,
                        "    power cut: %d cycles, %zu events acknowledged, lost %zu, duplicated %zu, damaged %zu, "
                        "%.1f s\n",
                        cycle, nacks, v.lost, v.duplicated, v.damaged, (double)(clock_mono_ns() - t0) / 1e9);
                test_fail(__FILE__, __LINE__, "after cut %d: %zu acknowledged events lost, %zu duplicated, %zu damaged",
                          cycle, v.lost, v.duplicated, v.damaged);
            }
            total = v;
        }
        if (cycle == cycles) {
            CHECK_MSG(WIFEXITED(server_stop(&s, SIGTERM)), "the server did not stop on SIGTERM");
            break;
        }
        /* Load, then the cut at a random moment. */
        clients_stop = cutting = false;
        answered_after_cut = 0;
        pthread_t th[CLIENTS];
        client_arg args[CLIENTS];
        for (int t = 0; t < CLIENTS; t++) {
            args[t] = (client_arg){s.port, cycle, t, test_rand()};
            CHECK(pthread_create(&th[t], NULL, client, &args[t]) == 0);
        }
        usleep((useconds_t)(50000 + test_rand() % 950000));
        int fd = open(PC_MNT, O_RDONLY | O_DIRECTORY);
        CHECK(fd >= 0);
        uint32_t flags = EXT4_GOING_FLAGS_NOLOGFLUSH;
        pthread_mutex_lock(&acks_mu);
        size_t before_cut = nacks; /* everything received before the shutdown call is issued */
        cutting = true;
        pthread_mutex_unlock(&acks_mu);
        int rc = ioctl(fd, EXT4_IOC_SHUTDOWN, &flags);
        int ioctl_errno = errno;
        server_stop(&s, SIGKILL);
        clients_stop = true;
        for (int t = 0; t < CLIENTS; t++)
            pthread_join(th[t], NULL);
        close(fd);
        CHECK_MSG(rc == 0, "EXT4_IOC_SHUTDOWN: %s", strerror(ioctl_errno));
        CHECK_MSG(!unexpected[0], "cycle %d, before the cut: %s", cycle, unexpected);
        nacks = before_cut;
        answered_other += answered_after_cut;
        pc_unmount();
        CHECK_MSG(!is_mounted(PC_MNT), "cycle %d: %s stays mounted", cycle, PC_MNT);
        CHECK_MSG(!pc_mount(why, sizeof why), "cycle %d: mounting the image after the cut failed: %s", cycle, why);
    }
    for (size_t k = 0; k < nacks; k++)
        batched += acks[k].batch_index != 0;
    fprintf(
        stderr,
        "    power cut: %d cycles, %zu events acknowledged (%zu in batches), lost %zu, duplicated %zu, damaged %zu, "
        "refused to open 0, %zu requests answered other than 201 after the cut began, %.1f s of cycles\n",
        cycles, nacks, batched, total.lost, total.duplicated, total.damaged, answered_other,
        (double)(clock_mono_ns() - t0) / 1e9);
    CHECK_MSG(nacks >= (size_t)cycles, "only %zu events were acknowledged in %d cycles", nacks, cycles);
    free(acks);
}

static _Atomic pid_t worker_pid;
static volatile sig_atomic_t timed_out;

static void on_alarm(int sig) {
    (void)sig;
    timed_out = 1;
    if (worker_pid > 0) kill(worker_pid, SIGKILL);
}

/* However the worker ended: no server, no mount, no loop device left behind. */
static void cleanup(bool keep_image) {
    pid_t srv_pid = shared->server;
    if (srv_pid > 0) kill(srv_pid, SIGKILL);
    while (waitpid(-1, NULL, 0) > 0 || errno == EINTR) {
    } /* orphans come to us: we are their subreaper */
    pc_unmount();
    pc_detach_loops();
    if (!keep_image) unlink(PC_IMG);
}

TEST_T(a_power_cut_loses_no_acknowledged_event, 240) {
    if (geteuid() != 0) {
        test_skip("needs root (loop devices, mount, EXT4_IOC_SHUTDOWN)");
    }
    int cycles = env_cycles();
    /* The runner's limit is for the default cycle count; more cycles get more time. */
    unsigned limit = (unsigned)MAX(240, 60 + 8 * cycles);
    shared = mmap(NULL, sizeof *shared, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(shared != MAP_FAILED);
    CHECK(mkdir(PC_BASE, 0755) == 0 || errno == EEXIST);
    int lock = open(PC_LOCK, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    CHECK(lock >= 0);
    /* One run at a time (a `make powercut` and a `make test` may overlap): the next waits as
       long as its own run may take, without the runner's limit ticking meanwhile. */
    alarm(0);
    for (unsigned waited_s = 0; flock(lock, LOCK_EX | LOCK_NB); waited_s++) {
        char holder[32] = "";
        CHECK_MSG(errno == EWOULDBLOCK, "flock %s: %s", PC_LOCK, strerror(errno));
        if (pread(lock, holder, sizeof holder - 1, 0) < 0) holder[0] = 0;
        CHECK_MSG(waited_s < limit, "another power-cut run (pid %.*s) held %s for over %u s",
                  (int)strcspn(holder, "\n"), holder, PC_LOCK, limit);
        sleep(1);
    }
    char me[32];
    int ml = snprintf(me, sizeof me, "%d\n", (int)getpid());
    CHECK(ftruncate(lock, 0) == 0 && pwrite(lock, me, (size_t)ml, 0) == ml);
    cleanup(false); /* what a run killed from outside left behind */
    unlink(PC_SERVER_LOG);
    CHECK(mkdir(PC_MNT, 0755) == 0 || errno == EEXIST);
    CHECK(prctl(PR_SET_CHILD_SUBREAPER, 1) == 0);
    struct sigaction sa = {.sa_handler = on_alarm};
    sigaction(SIGALRM, &sa, NULL);
    alarm(limit);
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        alarm(0);
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* killed with the test, so the next run can clean up */
        worker(cycles);
        _exit(0);
    }
    worker_pid = pid;
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    alarm(0);
    bool ok = WIFEXITED(st) && (WEXITSTATUS(st) == 0 || WEXITSTATUS(st) == PC_SKIP);
    cleanup(!ok);
    close(lock);
    munmap(shared, sizeof *shared);
    if (timed_out) test_fail(__FILE__, __LINE__, "time limit of %u s for %d cycles reached", limit, cycles);
    CHECK_MSG(ok, "the power-cut run failed (above); the image is kept in %s until the next run", PC_IMG);
    if (WEXITSTATUS(st) == PC_SKIP) test_skip("the kernel or the machine refused a step (above)");
}
