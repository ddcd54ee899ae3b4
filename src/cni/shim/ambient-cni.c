/*
 * ambient-cni: the CNI plugin executable, as a tiny static shim.
 *
 * The plugin logic lives in the node agent (src/cni/plugin.ts); this program only moves one CNI
 * invocation there and the answer back, so that it runs on a host without Node installed
 * (DESIGN.md §2). Built with `cc -static`; it uses nothing but libc and the kernel.
 *
 *   CNI_COMMAND=VERSION     answered here, so it works with no agent running.
 *   anything else           stdin + the CNI_* variables go to the agent as
 *                             POST /cni  {"env":{"CNI_COMMAND":"ADD",...},"stdin":"<config>"}
 *                           over the unix socket <cni_agent_run_dir>/pluginevent.sock, where
 *                           cni_agent_run_dir is the key of that name in the network config on
 *                           stdin (as istio-cni finds its agent), default /var/run/istio-cni;
 *                           $AMBIENT_CNI_SOCKET, when set, overrides it (for tests and debugging).
 *                           HTTP 200: the body is the CNI result; print it, exit 0.
 *                           other:    the body is a CNI error JSON; print it, exit 1.
 *   agent unreachable, timeout (30 s overall) or a malformed answer: print our own CNI error
 *   (code 11, "try again later") and exit 1. The pod sandbox then fails and kubelet retries:
 *   fail closed, as istio-cni does.
 *
 * Every buffer is either fixed and bounded or grown with realloc up to MAX_BYTES.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_SOCKET "/var/run/istio-cni/pluginevent.sock"
#define TIMEOUT_MS 30000
/* Upper bound for stdin, the request and the response: far above any real CNI config. */
#define MAX_BYTES (64u * 1024u * 1024u)
#define ERROR_VERSION "1.0.0"
#define CODE_TRY_AGAIN 11
#define CODE_IO_FAILURE 5
#define CODE_INVALID_ENV 4

static const char *const FORWARDED_ENV[] = {"CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH"};

/* ---------------------------------------------------------------------------------------------- */
/* A growable byte buffer. On allocation failure or when MAX_BYTES would be passed, `failed` is set
 * and further appends are ignored; callers check it once at the end. */

struct buf {
  char *data;
  size_t len;
  size_t cap;
  int failed;
};

static int buf_reserve(struct buf *b, size_t extra) {
  if (b->failed) return -1;
  if (extra > MAX_BYTES || b->len > MAX_BYTES - extra) {
    b->failed = 1;
    return -1;
  }
  size_t need = b->len + extra + 1; /* +1 keeps room for a terminating NUL */
  if (need <= b->cap) return 0;
  size_t cap = b->cap == 0 ? 4096 : b->cap;
  while (cap < need) cap *= 2;
  char *p = realloc(b->data, cap);
  if (p == NULL) {
    b->failed = 1;
    return -1;
  }
  b->data = p;
  b->cap = cap;
  return 0;
}

static void buf_append(struct buf *b, const char *s, size_t n) {
  if (buf_reserve(b, n) != 0) return;
  memcpy(b->data + b->len, s, n);
  b->len += n;
  b->data[b->len] = '\0';
}

static void buf_puts(struct buf *b, const char *s) { buf_append(b, s, strlen(s)); }

/* Appends `s` (n bytes) as the inside of a JSON string. Bytes >= 0x80 are copied as they are
 * (UTF-8 passes through); control characters, '"' and '\\' are escaped. */
static void buf_json_escape(struct buf *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    char esc[6];
    switch (c) {
      case '"': buf_append(b, "\\\"", 2); break;
      case '\\': buf_append(b, "\\\\", 2); break;
      case '\n': buf_append(b, "\\n", 2); break;
      case '\r': buf_append(b, "\\r", 2); break;
      case '\t': buf_append(b, "\\t", 2); break;
      default:
        if (c < 0x20 || c == 0x7f) {
          esc[0] = '\\'; esc[1] = 'u'; esc[2] = '0'; esc[3] = '0';
          esc[4] = hex[c >> 4]; esc[5] = hex[c & 0xf];
          buf_append(b, esc, 6);
        } else {
          buf_append(b, (const char *)&c, 1);
        }
    }
  }
}

/* ---------------------------------------------------------------------------------------------- */
/* Output */

/* Writes all of `data` to fd 1, retrying on EINTR and short writes. */
static int write_stdout(const char *data, size_t len) {
  while (len > 0) {
    ssize_t n = write(STDOUT_FILENO, data, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    data += n;
    len -= (size_t)n;
  }
  return 0;
}

/* Prints a CNI error JSON of our own and exits 1. `details` is printf-formatted. */
__attribute__((noreturn, format(printf, 3, 4))) static void fail(int code, const char *msg, const char *details_fmt, ...) {
  char details[512];
  va_list ap;
  va_start(ap, details_fmt);
  int n = vsnprintf(details, sizeof details, details_fmt, ap);
  va_end(ap);
  if (n < 0) details[0] = '\0'; /* vsnprintf truncates safely on overflow */

  /* A static buffer: this path must work even when malloc has failed. msg and details are
   * bounded (msg is a literal, details 511 bytes, escaping at most x6), so 4 KiB always fits. */
  static char out[4096 + 6 * sizeof details];
  size_t len = 0;
  len += (size_t)snprintf(out, sizeof out, "{\"cniVersion\":\"%s\",\"code\":%d,\"msg\":\"", ERROR_VERSION, code);
  struct buf tmp = {0};
  buf_json_escape(&tmp, msg, strlen(msg));
  buf_puts(&tmp, "\",\"details\":\"");
  buf_json_escape(&tmp, details, strlen(details));
  buf_puts(&tmp, "\"}\n");
  if (!tmp.failed && tmp.len < sizeof out - len) {
    memcpy(out + len, tmp.data, tmp.len);
    len += tmp.len;
  } else {
    /* Out of memory: fall back to a fixed message that needs no escaping. */
    len = (size_t)snprintf(out, sizeof out, "{\"cniVersion\":\"%s\",\"code\":%d,\"msg\":\"ambient-cni: out of memory\"}\n",
                           ERROR_VERSION, code);
  }
  (void)write_stdout(out, len);
  exit(1);
}

__attribute__((noreturn)) static void fail_unreachable(const char *why, const char *what) {
  fail(CODE_TRY_AGAIN, "ambient-cni: cannot reach the node agent", "%s: %s", why, what);
}

/* ---------------------------------------------------------------------------------------------- */
/* Time */

static long long now_ms(void) {
  struct timespec ts;
  if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) return 0;
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Milliseconds left before `deadline`, or fail with a timeout. */
static int remaining_ms(long long deadline, const char *phase) {
  long long left = deadline - now_ms();
  if (left <= 0) fail_unreachable("timed out after 30 s", phase);
  return left > 1000000 ? 1000000 : (int)left;
}

/* Waits until `fd` is ready for `events`, within the deadline. */
static void wait_fd(int fd, short events, long long deadline, const char *phase) {
  for (;;) {
    struct pollfd p = {.fd = fd, .events = events, .revents = 0};
    int r = poll(&p, 1, remaining_ms(deadline, phase));
    if (r > 0) return; /* readable/writable, or an error/hangup the next syscall will report */
    if (r == 0) continue; /* remaining_ms fails once the deadline has passed */
    if (errno != EINTR) fail_unreachable(phase, strerror(errno));
  }
}

/* ---------------------------------------------------------------------------------------------- */
/* VERSION */

static int cmd_version(void) {
  static const char out[] =
      "{\"cniVersion\":\"1.1.0\",\"supportedVersions\":[\"0.3.0\",\"0.3.1\",\"0.4.0\",\"1.0.0\",\"1.1.0\"]}\n";
  return write_stdout(out, sizeof out - 1) == 0 ? 0 : 1;
}

/* ---------------------------------------------------------------------------------------------- */
/* Forwarding */

static void read_stdin(struct buf *in) {
  char chunk[65536];
  for (;;) {
    ssize_t n = read(STDIN_FILENO, chunk, sizeof chunk);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EBADF) return; /* no stdin at all: an empty config, the agent will say so */
      fail(CODE_IO_FAILURE, "ambient-cni: cannot read stdin", "%s", strerror(errno));
    }
    if (n == 0) return;
    buf_append(in, chunk, (size_t)n);
    if (in->failed) fail(CODE_IO_FAILURE, "ambient-cni: cannot read stdin", "config larger than %u bytes or out of memory", MAX_BYTES);
  }
}

static void build_request(struct buf *req, const struct buf *in) {
  struct buf body = {0};
  buf_puts(&body, "{\"env\":{");
  int first = 1;
  for (size_t i = 0; i < sizeof FORWARDED_ENV / sizeof FORWARDED_ENV[0]; i++) {
    const char *v = getenv(FORWARDED_ENV[i]);
    if (v == NULL) continue;
    if (!first) buf_puts(&body, ",");
    first = 0;
    buf_puts(&body, "\"");
    buf_puts(&body, FORWARDED_ENV[i]);
    buf_puts(&body, "\":\"");
    buf_json_escape(&body, v, strlen(v));
    buf_puts(&body, "\"");
  }
  buf_puts(&body, "},\"stdin\":\"");
  buf_json_escape(&body, in->len > 0 ? in->data : "", in->len);
  buf_puts(&body, "\"}");
  if (body.failed) fail(CODE_IO_FAILURE, "ambient-cni: cannot build the request", "config too large or out of memory");

  char head[256];
  int n = snprintf(head, sizeof head,
                   "POST /cni HTTP/1.1\r\nHost: unix\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                   "Connection: close\r\n\r\n",
                   body.len);
  if (n < 0 || (size_t)n >= sizeof head) fail(CODE_IO_FAILURE, "ambient-cni: cannot build the request", "header overflow");
  buf_append(req, head, (size_t)n);
  buf_append(req, body.data, body.len);
  free(body.data);
  if (req->failed) fail(CODE_IO_FAILURE, "ambient-cni: cannot build the request", "out of memory");
}

static int connect_agent(const char *path, long long deadline) {
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  if (strlen(path) >= sizeof addr.sun_path) fail_unreachable("socket path too long", path);
  memcpy(addr.sun_path, path, strlen(path) + 1);

  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) fail_unreachable("socket", strerror(errno));
  for (;;) {
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0) return fd;
    if (errno == EINTR) continue;
    /* A non-blocking unix connect fails with EAGAIN while the listen backlog is full: wait a little
     * and retry until the deadline. */
    if (errno == EAGAIN) {
      remaining_ms(deadline, "connect");
      struct timespec pause = {.tv_sec = 0, .tv_nsec = 10 * 1000 * 1000};
      nanosleep(&pause, NULL);
      continue;
    }
    if (errno == EINPROGRESS) { /* not expected for AF_UNIX, handled for completeness */
      wait_fd(fd, POLLOUT, deadline, "connect");
      int err = 0;
      socklen_t len = sizeof err;
      if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
      if (err == 0) return fd;
      errno = err;
    }
    int saved = errno;
    char what[sizeof addr.sun_path + 64];
    snprintf(what, sizeof what, "connect %s: %s", path, strerror(saved));
    fail_unreachable("agent socket", what);
  }
}

static void send_all(int fd, const struct buf *req, long long deadline) {
  size_t off = 0;
  while (off < req->len) {
    /* MSG_NOSIGNAL: a peer that went away is an error to report, not a SIGPIPE. */
    ssize_t n = send(fd, req->data + off, req->len - off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        wait_fd(fd, POLLOUT, deadline, "sending the request");
        continue;
      }
      fail_unreachable("sending the request", strerror(errno));
    }
    off += (size_t)n;
  }
}

/* Reads until the agent closes the connection (we asked for Connection: close). */
static void recv_all(int fd, struct buf *resp, long long deadline) {
  char chunk[65536];
  for (;;) {
    ssize_t n = recv(fd, chunk, sizeof chunk, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        wait_fd(fd, POLLIN, deadline, "waiting for the answer");
        continue;
      }
      fail_unreachable("reading the answer", strerror(errno));
    }
    if (n == 0) break;
    buf_append(resp, chunk, (size_t)n);
    if (resp->failed) fail_unreachable("malformed answer", "response too large or out of memory");
  }
}

/* Case-insensitive search for header `name` in the header block [h, h+len); returns a pointer to
 * its value (leading spaces skipped) and sets *vlen, or NULL. */
static const char *find_header(const char *h, size_t len, const char *name, size_t *vlen) {
  size_t nlen = strlen(name);
  const char *end = h + len;
  const char *line = memchr(h, '\n', len); /* skip the status line */
  while (line != NULL && line + 1 < end) {
    line++;
    const char *eol = memchr(line, '\n', (size_t)(end - line));
    if (eol == NULL) eol = end;
    if ((size_t)(eol - line) > nlen && strncasecmp(line, name, nlen) == 0 && line[nlen] == ':') {
      const char *v = line + nlen + 1;
      while (v < eol && (*v == ' ' || *v == '\t')) v++;
      const char *ve = eol;
      while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t')) ve--;
      *vlen = (size_t)(ve - v);
      return v;
    }
    line = eol < end ? eol : NULL;
  }
  return NULL;
}

/* Decodes a chunked body in place; returns its length, or -1 when malformed. */
static long dechunk(char *body, size_t len) {
  size_t in = 0, out = 0;
  for (;;) {
    const char *eol = memchr(body + in, '\n', len - in);
    if (eol == NULL) return -1;
    char *endp = NULL;
    errno = 0;
    unsigned long size = strtoul(body + in, &endp, 16);
    if (errno != 0 || endp == body + in) return -1;
    in = (size_t)(eol - body) + 1;
    if (size == 0) return (long)out;
    if (size > len - in || len - in - size < 2) return -1;
    memmove(body + out, body + in, size);
    out += size;
    in += size;
    if (body[in] == '\r') in++;
    if (in >= len || body[in] != '\n') return -1;
    in++;
  }
}

/*
 * The agent's socket from the config's "cni_agent_run_dir" string: `<dir>/pluginevent.sock` in `out`.
 * A plain scan, not a JSON parser: the key must be followed by a string without escapes, else (or when
 * absent) the default is used. Returns `out`, or NULL for the default.
 */
static const char *socket_from_config(const struct buf *in, char *out, size_t cap) {
  static const char key[] = "\"cni_agent_run_dir\"";
  if (in->data == NULL) return NULL;
  const char *at = memmem(in->data, in->len, key, sizeof key - 1);
  if (at == NULL) return NULL;
  const char *p = at + sizeof key - 1, *end = in->data + in->len;
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
  if (p >= end || *p++ != ':') return NULL;
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
  if (p >= end || *p++ != '"') return NULL;
  const char *q = p;
  while (q < end && *q != '"' && *q != '\\') q++;
  if (q >= end || *q != '"' || q == p) return NULL;
  size_t n = (size_t)(q - p);
  static const char leaf[] = "/pluginevent.sock";
  if (n + sizeof leaf > cap) return NULL;
  memcpy(out, p, n);
  memcpy(out + n, leaf, sizeof leaf);
  return out;
}

static int forward(void) {
  long long deadline = now_ms() + TIMEOUT_MS;

  struct buf in = {0}, req = {0}, resp = {0};
  read_stdin(&in);
  char from_config[sizeof(((struct sockaddr_un *)0)->sun_path)];
  const char *path = getenv("AMBIENT_CNI_SOCKET");
  if (path == NULL || path[0] == '\0') path = socket_from_config(&in, from_config, sizeof from_config);
  if (path == NULL) path = DEFAULT_SOCKET;
  build_request(&req, &in);
  free(in.data);

  int fd = connect_agent(path, deadline);
  send_all(fd, &req, deadline);
  free(req.data);
  recv_all(fd, &resp, deadline);
  (void)close(fd); /* the whole answer is in memory; a close error cannot change it */

  /* Status line: "HTTP/1.x NNN ..." */
  if (resp.len < 12 || strncmp(resp.data, "HTTP/1.", 7) != 0 || resp.data[8] != ' ') {
    fail_unreachable("malformed answer", resp.len == 0 ? "the agent closed the connection without answering" : "no HTTP status line");
  }
  int status = 0;
  for (int i = 9; i < 12; i++) {
    if (resp.data[i] < '0' || resp.data[i] > '9') fail_unreachable("malformed answer", "bad HTTP status code");
    status = status * 10 + (resp.data[i] - '0');
  }
  const char *sep = memmem(resp.data, resp.len, "\r\n\r\n", 4);
  if (sep == NULL) fail_unreachable("malformed answer", "incomplete HTTP header");
  size_t head_len = (size_t)(sep - resp.data);
  char *body = resp.data + head_len + 4;
  size_t body_len = resp.len - head_len - 4;

  size_t vlen = 0;
  const char *te = find_header(resp.data, head_len, "Transfer-Encoding", &vlen);
  const char *cl = find_header(resp.data, head_len, "Content-Length", &vlen);
  if (te != NULL) {
    long n = dechunk(body, body_len);
    if (n < 0) fail_unreachable("malformed answer", "bad chunked encoding");
    body_len = (size_t)n;
  } else if (cl != NULL) {
    char *endp = NULL;
    errno = 0;
    unsigned long long want = strtoull(cl, &endp, 10);
    if (errno != 0 || endp == cl || want > body_len) fail_unreachable("malformed answer", "body shorter than Content-Length");
    body_len = (size_t)want;
  }

  if (status == 200) {
    if (write_stdout(body, body_len) != 0) return 1; /* stdout gone: the runtime will see a failure anyway */
    free(resp.data);
    return 0;
  }
  if (body_len == 0) fail_unreachable("malformed answer", "error status without a CNI error body");
  (void)write_stdout(body, body_len);
  free(resp.data);
  return 1;
}

int main(void) {
  const char *cmd = getenv("CNI_COMMAND");
  if (cmd == NULL || cmd[0] == '\0') fail(CODE_INVALID_ENV, "required env variables [CNI_COMMAND] missing", "%s", "CNI_COMMAND is not set");
  if (strcmp(cmd, "VERSION") == 0) return cmd_version();
  return forward();
}
