/*
 * test_http_crash.c — crash safety through the server: concurrent HTTP clients append and
 * record every 201; the server is killed with SIGKILL at random moments and restarted. After
 * all cycles every acknowledged event is in the store, once, at the revision and position
 * its 201 named.
 */
#include "test_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#define CLIENTS 6
#define CYCLES 24

typedef struct {
    char id[48];
    uint32_t stream;
    uint64_t revision, position;
} ack;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static ack *acks;
static size_t nacks, capacks;

/* One request; the status, or 0 if the server was not there to answer. Never fails the test. */
static int try_append(int port, const char *path, const char *body, char *out, size_t cap) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a)) {
        close(fd);
        return 0;
    }
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n%s",
                     path, strlen(body), body);
    if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
        close(fd);
        return 0;
    }
    size_t len = 0;
    for (;;) {
        ssize_t r = recv(fd, out + len, cap - 1 - len, 0);
        if (r <= 0) break;
        len += (size_t)r;
    }
    close(fd);
    out[len] = 0;
    if (len < 12 || strncmp(out, "HTTP/1.1 ", 9)) return 0;
    return atoi(out + 9);
}

static void *client(void *p) {
    kill_load *c = p;
    for (int i = 0; !*c->stop; i++) {
        uint32_t s = (uint32_t)(c->client * 7 + i) % 10;
        char path[64], body[256], out[2048], id[48];
        snprintf(id, sizeof id, "c%d-t%d-%d", c->cycle, c->client, i);
        snprintf(path, sizeof path, "/streams/http-%u", s);
        snprintf(body, sizeof body, "{\"type\":\"Crash\",\"id\":\"%s\",\"data\":{\"id\":\"%s\",\"pad\":\"%0*d\"}}", id,
                 id, i % 100, 0);
        int st = try_append(c->port, path, body, out, sizeof out);
        if (st == 0) break; /* the server is gone */
        CHECK_MSG(st == 201, "append answered %d: %s", st, out);
        const char *b = strstr(out, "\r\n\r\n");
        ack a = {.stream = s};
        snprintf(a.id, sizeof a.id, "%s", id);
        CHECK(b && sscanf(b + 4,
                          "{\"stream\":\"http-%*u\",\"first_revision\":%*u,\"revision\":%lu,\"first_position\":%*u,"
                          "\"position\":%lu",
                          &a.revision, &a.position) == 2);
        pthread_mutex_lock(&mu);
        if (nacks == capacks) acks = realloc(acks, (capacks = capacks ? capacks * 2 : 1024) * sizeof *acks);
        acks[nacks++] = a;
        pthread_mutex_unlock(&mu);
    }
    return NULL;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

TEST_T(killing_the_server_with_sigkill_loses_no_acknowledged_append, 300) {
    srv_kill_cycles(CYCLES, CLIENTS, client, 30, 200);
    CHECK_MSG(nacks > 200, "only %zu appends were acknowledged", nacks);
    fprintf(stderr, "    %zu appends acknowledged over %d kills\n", nacks, CYCLES);
    /* Every acknowledged event where its 201 said, byte for byte; no id twice in the log. */
    factum_t *db = test_open(test_dir(), NULL);
    for (size_t k = 0; k < nacks; k++) {
        char stream[32];
        snprintf(stream, sizeof stream, "http-%u", acks[k].stream);
        factum_result_t *res;
        CHECK_RC(factum_read_stream(db, str_c(stream), acks[k].revision, 1, 0, &res, NULL), 0);
        CHECK_MSG(factum_result_count(res) == 1, "acknowledged %s is missing", acks[k].id);
        const factum_event_t *e = factum_result_event(res, 0);
        CHECK_MSG(str_eq(e->id, str_c(acks[k].id)), "revision %lu of %s holds %.*s, not %s", acks[k].revision, stream,
                  (int)e->id.len, e->id.ptr, acks[k].id);
        CHECK_EQ(e->position, acks[k].position);
        factum_result_free(res);
    }
    uint64_t head = factum_head_position(db);
    uint64_t *hs = malloc((head + 1) * sizeof *hs);
    for (uint64_t p = 0; p < head;) {
        factum_query_t q = {.from = p, .limit = 10000};
        factum_result_t *res;
        CHECK_RC(factum_read_all(db, &q, &res, NULL), 0);
        for (size_t i = 0; i < factum_result_count(res); i++, p++) {
            factum_str_t id = factum_result_event(res, i)->id;
            hs[p] = hash64(id.ptr, id.len, 7);
        }
        factum_result_free(res);
    }
    qsort(hs, head, sizeof *hs, cmp_u64);
    for (uint64_t i = 1; i < head; i++)
        CHECK_MSG(hs[i] != hs[i - 1], "an event id appears twice in the log");
    free(hs);
    factum_close(db);
    /* And the server serves it again. */
    srv s = srv_start(test_dir(), NULL);
    resp r;
    http_do(s.port, "GET", "/health", NULL, NULL, &r);
    char want[64];
    snprintf(want, sizeof want, "\"position\":%llu", (unsigned long long)head);
    CHECK_MSG(strstr(r.body, want), "health says %s, want %s", r.body, want);
    resp_free(&r);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}
