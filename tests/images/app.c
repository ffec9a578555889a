/*
 * The entrypoint of every test image (see tests/it/dockerenv.rs), built with
 * `gcc -static -O2` and copied into an image FROM scratch as /app.
 *
 *   app serve   listen on 0.0.0.0:$PORT (default 8080) and answer any HTTP request with
 *               200 and a text/plain body of `key=value` lines:
 *                 version=$VERSION
 *                 greeting=$GREETING
 *                 marker=<contents of /data/marker, trailing newlines removed>  (if it exists)
 *                 hostname=<hostname>                                            (container id)
 *               SIGTERM or SIGINT: exit 0 at once.
 *               For the container-event tests, two requests change it: `GET /exit` is
 *               answered, then the app exits with status 3 (a crash); after `GET /sick` every
 *               request (the healthcheck's too) is answered 503.
 *   app check   the image's HEALTHCHECK: exit 1 if BROKEN=1, else exit 0 when 127.0.0.1:$PORT
 *               answers an HTTP request, 1 otherwise.
 *
 * No argument means `serve`. Requests are served one at a time with short socket timeouts, so
 * a client that never finishes its request cannot stall the server for long.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <arpa/inet.h>

static const char *env_or(const char *name, const char *dflt) {
    const char *v = getenv(name);
    return v ? v : dflt;
}

static int port(void) {
    long p = strtol(env_or("PORT", "8080"), NULL, 10);
    return (p > 0 && p < 65536) ? (int)p : 8080;
}

static void on_term(int sig) {
    (void)sig;
    _exit(0);
}

static void timeouts(int fd, int seconds) {
    struct timeval tv = {.tv_sec = seconds, .tv_usec = 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

static int write_all(int fd, const char *buf, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Reads until the end of the request head (or 8 KiB, EOF, error or timeout); copies its
 * start (the request line) into `start`. */
static void read_request(int fd, char *start, size_t cap) {
    char buf[8192];
    buf[0] = 0;
    size_t have = 0;
    while (have < sizeof buf - 1) {
        ssize_t n = read(fd, buf + have, sizeof buf - 1 - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        have += (size_t)n;
        buf[have] = 0;
        if (strstr(buf, "\r\n\r\n") || strstr(buf, "\n\n"))
            break;
    }
    snprintf(start, cap, "%s", buf);
}

static size_t append(char *out, size_t at, size_t cap, const char *key, const char *val) {
    int n = snprintf(out + at, cap - at, "%s=%s\n", key, val);
    if (n < 0)
        return at;
    at += (size_t)n;
    return at < cap ? at : cap - 1;
}

static size_t body(char *out, size_t cap) {
    size_t at = 0;
    at = append(out, at, cap, "version", env_or("VERSION", ""));
    at = append(out, at, cap, "greeting", env_or("GREETING", ""));
    FILE *f = fopen("/data/marker", "r");
    if (f) {
        char marker[1024];
        size_t n = fread(marker, 1, sizeof marker - 1, f);
        fclose(f);
        marker[n] = 0;
        while (n > 0 && (marker[n - 1] == '\n' || marker[n - 1] == '\r'))
            marker[--n] = 0;
        at = append(out, at, cap, "marker", marker);
    }
    char host[256] = "";
    if (gethostname(host, sizeof host - 1) == 0)
        at = append(out, at, cap, "hostname", host);
    return at;
}

static int serve(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) {
        perror("socket");
        return 1;
    }
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)port());
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    if (bind(s, (struct sockaddr *)&addr, sizeof addr) < 0) {
        perror("bind");
        return 1;
    }
    if (listen(s, 64) < 0) {
        perror("listen");
        return 1;
    }
    fprintf(stderr, "app: version=%s listening on port %d\n", env_or("VERSION", ""), port());

    int sick = 0;
    for (;;) {
        int c = accept(s, NULL, NULL);
        if (c < 0)
            continue; /* EINTR, ECONNABORTED, EMFILE...: keep serving */
        timeouts(c, 2);
        char start[16];
        read_request(c, start, sizeof start);
        int crash = strncmp(start, "GET /exit ", 10) == 0;
        if (strncmp(start, "GET /sick ", 10) == 0)
            sick = 1;
        char text[2048];
        size_t len = body(text, sizeof text);
        char head[256];
        int hl = snprintf(head, sizeof head,
                          "HTTP/1.1 %s\r\nContent-Type: text/plain\r\n"
                          "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                          sick ? "503 Sick" : "200 OK", len);
        if (write_all(c, head, (size_t)hl) == 0)
            write_all(c, text, len);
        shutdown(c, SHUT_WR);
        close(c);
        if (crash)
            _exit(3);
    }
}

static int check(void) {
    if (strcmp(env_or("BROKEN", ""), "1") == 0) {
        fprintf(stderr, "app check: BROKEN=1\n");
        return 1;
    }
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0)
        return 1;
    timeouts(s, 1);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)port());
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(s, (struct sockaddr *)&addr, sizeof addr) < 0) {
        perror("app check: connect");
        return 1;
    }
    const char *req = "GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n";
    if (write_all(s, req, strlen(req)) < 0)
        return 1;
    char buf[16] = "";
    size_t have = 0;
    while (have < 12) {
        ssize_t n = read(s, buf + have, 12 - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        have += (size_t)n;
    }
    close(s);
    if (have >= 12 && strncmp(buf, "HTTP/1.1 200", 12) == 0) {
        printf("ok\n");
        return 0;
    }
    fprintf(stderr, "app check: no 200 answer\n");
    return 1;
}

int main(int argc, char **argv) {
    const char *cmd = argc > 1 ? argv[1] : "serve";
    if (strcmp(cmd, "serve") == 0)
        return serve();
    if (strcmp(cmd, "check") == 0)
        return check();
    fprintf(stderr, "usage: app [serve|check]\n");
    return 2;
}
