/*
 * The project's only native code: socket options Node does not expose, sockets created inside another
 * network namespace, and SOCK_SEQPACKET unix sockets with SCM_RIGHTS fd passing (the ZDS transport).
 * Node-API only (ABI-stable). Each function throws an Error whose `code` is the errno name.
 * Nothing here blocks the calling (main) thread: sockets are non-blocking and waiting for readiness
 * is `pollFd`, which runs poll(2) on the libuv threadpool and resolves a Promise.
 */
#define _GNU_SOURCE
#include <node_api.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>
#include <linux/netfilter_ipv4.h>

#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif
#ifndef IP_TRANSPARENT
#define IP_TRANSPARENT 19
#endif
#ifndef IPV6_TRANSPARENT
#define IPV6_TRANSPARENT 75
#endif

static const char *errno_code(int err) {
  switch (err) {
    case EBADF: return "EBADF";
    case ENOTSOCK: return "ENOTSOCK";
    case ENOENT: return "ENOENT";
    case ENOPROTOOPT: return "ENOPROTOOPT";
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case EINVAL: return "EINVAL";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    case EAGAIN: return "EAGAIN";
    case ECONNREFUSED: return "ECONNREFUSED";
    case ECONNRESET: return "ECONNRESET";
    case EMSGSIZE: return "EMSGSIZE";
    case EPIPE: return "EPIPE";
    case ENOTCONN: return "ENOTCONN";
    case EADDRINUSE: return "EADDRINUSE";
    case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case ENOTDIR: return "ENOTDIR";
    case EMFILE: return "EMFILE";
    case ENFILE: return "ENFILE";
    case ENOMEM: return "ENOMEM";
    case ENOBUFS: return "ENOBUFS";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case EPROTOTYPE: return "EPROTOTYPE";
    case EINTR: return "EINTR";
    default: return "EIO";
  }
}

static napi_value throw_errno(napi_env env, int err, const char *syscall) {
  char message[160];
  snprintf(message, sizeof message, "%s failed: %s", syscall, strerror(err));
  napi_throw_error(env, errno_code(err), message);
  return NULL;
}

static int arg_int(napi_env env, napi_callback_info info, size_t count, int32_t *out) {
  napi_value argv[3];
  size_t argc = 3;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < count) {
    napi_throw_type_error(env, "ERR_INVALID_ARG", "missing argument");
    return 0;
  }
  for (size_t i = 0; i < count; i++) {
    if (napi_get_value_int32(env, argv[i], &out[i]) != napi_ok) {
      napi_throw_type_error(env, "ERR_INVALID_ARG", "arguments must be integers");
      return 0;
    }
  }
  return 1;
}

static int socket_family(int fd) {
  struct sockaddr_storage local;
  socklen_t len = sizeof local;
  if (getsockname(fd, (struct sockaddr *)&local, &len) != 0) return -1;
  return local.ss_family;
}

/* originalDestination(fd) -> { address, port, family } from the NAT table (REDIRECT / TPROXY-less). */
static napi_value original_destination(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (!arg_int(env, info, 1, &fd)) return NULL;
  int family = socket_family(fd);
  if (family < 0) return throw_errno(env, errno, "getsockname");
  char text[INET6_ADDRSTRLEN];
  int port;
  const char *family_name;
  if (family == AF_INET6) {
    struct sockaddr_in6 dst;
    socklen_t len = sizeof dst;
    if (getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &dst, &len) != 0) return throw_errno(env, errno, "getsockopt(IP6T_SO_ORIGINAL_DST)");
    if (IN6_IS_ADDR_V4MAPPED(&dst.sin6_addr)) {
      inet_ntop(AF_INET, &dst.sin6_addr.s6_addr[12], text, sizeof text);
      family_name = "IPv4";
    } else {
      inet_ntop(AF_INET6, &dst.sin6_addr, text, sizeof text);
      family_name = "IPv6";
    }
    port = ntohs(dst.sin6_port);
  } else if (family == AF_INET) {
    struct sockaddr_in dst;
    socklen_t len = sizeof dst;
    if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &dst, &len) != 0) return throw_errno(env, errno, "getsockopt(SO_ORIGINAL_DST)");
    inet_ntop(AF_INET, &dst.sin_addr, text, sizeof text);
    family_name = "IPv4";
    port = ntohs(dst.sin_port);
  } else {
    return throw_errno(env, EAFNOSUPPORT, "originalDestination");
  }
  napi_value result, address, port_value, family_value;
  napi_create_object(env, &result);
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &address);
  napi_create_int32(env, port, &port_value);
  napi_create_string_utf8(env, family_name, NAPI_AUTO_LENGTH, &family_value);
  napi_set_named_property(env, result, "address", address);
  napi_set_named_property(env, result, "port", port_value);
  napi_set_named_property(env, result, "family", family_value);
  return result;
}

/* setMark(fd, mark): SO_MARK, so the pod's rules let the proxy's own packets out (needs CAP_NET_ADMIN). */
static napi_value set_mark(napi_env env, napi_callback_info info) {
  int32_t args[2];
  if (!arg_int(env, info, 2, args)) return NULL;
  uint32_t mark = (uint32_t)args[1];
  if (setsockopt(args[0], SOL_SOCKET, SO_MARK, &mark, sizeof mark) != 0) return throw_errno(env, errno, "setsockopt(SO_MARK)");
  return NULL;
}

/* setTransparent(fd): IP_TRANSPARENT / IPV6_TRANSPARENT, to bind a non-local (the client's) address. */
static napi_value set_transparent(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (!arg_int(env, info, 1, &fd)) return NULL;
  int family = socket_family(fd);
  if (family < 0) return throw_errno(env, errno, "getsockname");
  int on = 1;
  int rc = family == AF_INET6 ? setsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &on, sizeof on) : setsockopt(fd, SOL_IP, IP_TRANSPARENT, &on, sizeof on);
  if (rc != 0) return throw_errno(env, errno, "setsockopt(IP_TRANSPARENT)");
  return NULL;
}

/* What make_tcp creates: a TCP socket with options, optionally bound and listening. */
struct tcp_spec {
  int family;          /* AF_INET or AF_INET6 */
  uint32_t mark;       /* SO_MARK when > 0 */
  int transparent;     /* IP(V6)_TRANSPARENT when != 0 */
  int listen;          /* bind + listen when != 0 */
  const char *host;    /* numeric address to bind (listen only) */
  int port;
  int backlog;
  int reuse_port;      /* SO_REUSEPORT when != 0 */
};

static int set_transparent_fd(int fd, int family) {
  int on = 1;
  return family == AF_INET6 ? setsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &on, sizeof on) : setsockopt(fd, SOL_IP, IP_TRANSPARENT, &on, sizeof on);
}

/*
 * A non-blocking, close-on-exec TCP socket per `spec`, in the calling thread's network namespace.
 * Returns the fd, or -errno with *what naming the failed call (the socket is closed then).
 */
static int make_tcp(const struct tcp_spec *spec, const char **what) {
  int fd = socket(spec->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *what = "socket";
    return -errno;
  }
  if (spec->mark > 0 && setsockopt(fd, SOL_SOCKET, SO_MARK, &spec->mark, sizeof spec->mark) != 0) {
    *what = "setsockopt(SO_MARK)";
    goto fail;
  }
  if (spec->transparent && set_transparent_fd(fd, spec->family) != 0) {
    *what = "setsockopt(IP_TRANSPARENT)";
    goto fail;
  }
  if (spec->listen) {
    int on = 1;
    /* libuv sets SO_REUSEADDR on every TCP listener; do the same so behaviour matches server.listen(port). */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0) {
      *what = "setsockopt(SO_REUSEADDR)";
      goto fail;
    }
    if (spec->reuse_port && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) != 0) {
      *what = "setsockopt(SO_REUSEPORT)";
      goto fail;
    }
    struct sockaddr_storage addr;
    socklen_t len;
    memset(&addr, 0, sizeof addr);
    if (spec->family == AF_INET6) {
      struct sockaddr_in6 *a = (struct sockaddr_in6 *)&addr;
      a->sin6_family = AF_INET6;
      a->sin6_port = htons((uint16_t)spec->port);
      if (inet_pton(AF_INET6, spec->host, &a->sin6_addr) != 1) {
        errno = EINVAL;
        *what = "inet_pton(host)";
        goto fail;
      }
      len = sizeof *a;
    } else {
      struct sockaddr_in *a = (struct sockaddr_in *)&addr;
      a->sin_family = AF_INET;
      a->sin_port = htons((uint16_t)spec->port);
      if (inet_pton(AF_INET, spec->host, &a->sin_addr) != 1) {
        errno = EINVAL;
        *what = "inet_pton(host)";
        goto fail;
      }
      len = sizeof *a;
    }
    if (bind(fd, (struct sockaddr *)&addr, len) != 0) {
      *what = "bind";
      goto fail;
    }
    if (listen(fd, spec->backlog) != 0) {
      *what = "listen";
      goto fail;
    }
  }
  return fd;
fail:;
  int err = errno;
  close(fd);
  return -err;
}

/*
 * tcpSocket(family, mark, transparent) -> fd: an unconnected, non-blocking TCP socket with SO_MARK
 * (when mark > 0) and IP_TRANSPARENT (when transparent != 0) set before its first packet. Node then
 * adopts it with `new net.Socket({ fd })` and connects it, so even the SYN carries the mark.
 */
static napi_value tcp_socket(napi_env env, napi_callback_info info) {
  int32_t args[3];
  if (!arg_int(env, info, 3, args)) return NULL;
  struct tcp_spec spec = {args[0] == 6 ? AF_INET6 : AF_INET, args[1] > 0 ? (uint32_t)args[1] : 0, args[2] != 0, 0, NULL, 0, 0, 0};
  const char *what = "socket";
  int fd = make_tcp(&spec, &what);
  if (fd < 0) return throw_errno(env, -fd, what);
  napi_value result;
  napi_create_int32(env, fd, &result);
  return result;
}

/* getMark(fd): read SO_MARK back (tests and diagnostics). */
static napi_value get_mark(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (!arg_int(env, info, 1, &fd)) return NULL;
  uint32_t mark = 0;
  socklen_t len = sizeof mark;
  if (getsockopt(fd, SOL_SOCKET, SO_MARK, &mark, &len) != 0) return throw_errno(env, errno, "getsockopt(SO_MARK)");
  napi_value result;
  napi_create_uint32(env, mark, &result);
  return result;
}

/* ---- network namespaces ---------------------------------------------------------------------- */

/* The calling thread's own network namespace (not the process's: setns() is per thread). */
static int open_thread_netns(void) {
  int fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) { /* kernels before 3.17 have no /proc/thread-self */
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%ld/ns/net", (long)syscall(SYS_gettid));
    fd = open(path, O_RDONLY | O_CLOEXEC);
  }
  return fd;
}

/*
 * Returns the calling thread to `original` and closes it. If that fails the process aborts: this is
 * Node's main thread, and a thread stuck in a pod's namespace would silently create every later socket
 * (listeners, xDS, CA, DNS) inside that pod. That state is unrecoverable and must not go unnoticed.
 */
static void restore_netns(int original) {
  if (setns(original, CLONE_NEWNET) != 0) {
    fprintf(stderr, "ambient_sys: cannot return the main thread to its network namespace (%s); aborting\n", strerror(errno));
    abort();
  }
  close(original);
}

/* make_tcp inside the namespace `netns_fd`; the thread is always back in its own namespace on return. */
static int make_tcp_in(int netns_fd, const struct tcp_spec *spec, const char **what) {
  int original = open_thread_netns();
  if (original < 0) {
    *what = "open(/proc/thread-self/ns/net)";
    return -errno;
  }
  if (setns(netns_fd, CLONE_NEWNET) != 0) {
    int err = errno;
    close(original);
    *what = "setns";
    return -err;
  }
  /* Sockets keep the namespace they were created in, whatever thread or namespace uses them later. */
  int fd = make_tcp(spec, what);
  restore_netns(original);
  return fd;
}

static int get_args(napi_env env, napi_callback_info info, size_t count, napi_value *argv) {
  size_t argc = count;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < count) {
    napi_throw_type_error(env, "ERR_INVALID_ARG", "missing argument");
    return 0;
  }
  return 1;
}

static int get_int(napi_env env, napi_value value, int32_t *out) {
  if (napi_get_value_int32(env, value, out) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG", "argument must be an integer");
    return 0;
  }
  return 1;
}

/* Copies a string argument into `out` (NUL-terminated); fails with ENAMETOOLONG when it does not fit. */
static int get_string(napi_env env, napi_value value, char *out, size_t size, const char *what) {
  size_t length = 0;
  if (napi_get_value_string_utf8(env, value, NULL, 0, &length) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG", "argument must be a string");
    return 0;
  }
  if (length + 1 > size) {
    throw_errno(env, ENAMETOOLONG, what);
    return 0;
  }
  napi_get_value_string_utf8(env, value, out, size, &length);
  return 1;
}

static napi_value int_result(napi_env env, int32_t value) {
  napi_value result;
  napi_create_int32(env, value, &result);
  return result;
}

/* openNetns(path) -> fd: a namespace file (/var/run/netns/<name>, /proc/<pid>/ns/net), O_RDONLY|O_CLOEXEC. */
static napi_value open_netns(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  char path[4096];
  if (!get_args(env, info, 1, argv) || !get_string(env, argv[0], path, sizeof path, "open")) return NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return throw_errno(env, errno, "open");
  return int_result(env, fd);
}

/* closeFd(fd) */
static napi_value close_fd(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (!arg_int(env, info, 1, &fd)) return NULL;
  if (close(fd) != 0 && errno != EINTR) return throw_errno(env, errno, "close");
  return NULL;
}

/* shutdownFd(fd): shutdown(SHUT_RDWR); wakes a poll(2) waiting on the socket in another thread. */
static napi_value shutdown_fd(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (!arg_int(env, info, 1, &fd)) return NULL;
  if (shutdown(fd, SHUT_RDWR) != 0) return throw_errno(env, errno, "shutdown");
  return NULL;
}

/* tcpSocketIn(netnsFd, family, mark, transparent) -> fd: tcpSocket, created inside the namespace. */
static napi_value tcp_socket_in(napi_env env, napi_callback_info info) {
  int32_t args[4];
  napi_value argv[4];
  if (!get_args(env, info, 4, argv)) return NULL;
  for (int i = 0; i < 4; i++) if (!get_int(env, argv[i], &args[i])) return NULL;
  struct tcp_spec spec = {args[1] == 6 ? AF_INET6 : AF_INET, args[2] > 0 ? (uint32_t)args[2] : 0, args[3] != 0, 0, NULL, 0, 0, 0};
  const char *what = "socket";
  int fd = make_tcp_in(args[0], &spec, &what);
  if (fd < 0) return throw_errno(env, -fd, what);
  return int_result(env, fd);
}

/* tcpListenIn(netnsFd, family, host, port, backlog, reusePort, transparent) -> fd: a bound, listening socket. */
static napi_value tcp_listen_in(napi_env env, napi_callback_info info) {
  napi_value argv[7];
  int32_t netns_fd, family, port, backlog, reuse_port, transparent;
  char host[INET6_ADDRSTRLEN + 1];
  if (!get_args(env, info, 7, argv)) return NULL;
  if (!get_int(env, argv[0], &netns_fd) || !get_int(env, argv[1], &family) || !get_string(env, argv[2], host, sizeof host, "inet_pton(host)") ||
      !get_int(env, argv[3], &port) || !get_int(env, argv[4], &backlog) || !get_int(env, argv[5], &reuse_port) || !get_int(env, argv[6], &transparent))
    return NULL;
  if (port < 0 || port > 65535) return throw_errno(env, EINVAL, "bind(port)");
  struct tcp_spec spec = {family == 6 ? AF_INET6 : AF_INET, 0, transparent != 0, 1, host, port, backlog, reuse_port != 0};
  const char *what = "socket";
  int fd = make_tcp_in(netns_fd, &spec, &what);
  if (fd < 0) return throw_errno(env, -fd, what);
  return int_result(env, fd);
}

/* ---- SOCK_SEQPACKET unix sockets with SCM_RIGHTS ------------------------------------------------ */

static int unix_address(const char *path, struct sockaddr_un *addr) {
  memset(addr, 0, sizeof *addr);
  addr->sun_family = AF_UNIX;
  if (strlen(path) >= sizeof addr->sun_path) return -1;
  strcpy(addr->sun_path, path);
  return 0;
}

/* seqpacketConnect(path) -> fd: connected, non-blocking. A full accept backlog is EAGAIN (retry later). */
static napi_value seqpacket_connect(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  char path[sizeof ((struct sockaddr_un *)0)->sun_path];
  struct sockaddr_un addr;
  if (!get_args(env, info, 1, argv) || !get_string(env, argv[0], path, sizeof path, "connect")) return NULL;
  unix_address(path, &addr);
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, errno, "socket(AF_UNIX, SOCK_SEQPACKET)");
  int rc;
  do rc = connect(fd, (struct sockaddr *)&addr, sizeof addr);
  while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, err, "connect");
  }
  return int_result(env, fd);
}

/* seqpacketListen(path, backlog) -> fd: bound and listening, non-blocking. The path must not exist. */
static napi_value seqpacket_listen(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int32_t backlog;
  char path[sizeof ((struct sockaddr_un *)0)->sun_path];
  struct sockaddr_un addr;
  if (!get_args(env, info, 2, argv) || !get_string(env, argv[0], path, sizeof path, "bind") || !get_int(env, argv[1], &backlog)) return NULL;
  unix_address(path, &addr);
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, errno, "socket(AF_UNIX, SOCK_SEQPACKET)");
  const char *what = "bind";
  if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || (what = "listen", listen(fd, backlog) != 0)) {
    int err = errno;
    close(fd);
    return throw_errno(env, err, what);
  }
  return int_result(env, fd);
}

/* seqpacketAccept(fd) -> fd | null (nothing pending). The accepted socket is non-blocking. */
static napi_value seqpacket_accept(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (!arg_int(env, info, 1, &fd)) return NULL;
  int conn;
  do conn = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  while (conn < 0 && errno == EINTR);
  if (conn < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNABORTED) {
      napi_value null_value;
      napi_get_null(env, &null_value);
      return null_value;
    }
    return throw_errno(env, errno, "accept");
  }
  return int_result(env, conn);
}

/* seqpacketSend(fd, bytes, passFd) -> true when sent (one message), false when it would block. passFd -1: none. */
static napi_value seqpacket_send(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int32_t fd, pass_fd;
  void *data = NULL;
  size_t length = 0;
  napi_typedarray_type type;
  if (!get_args(env, info, 3, argv) || !get_int(env, argv[0], &fd) || !get_int(env, argv[2], &pass_fd)) return NULL;
  bool is_typed = false;
  napi_is_typedarray(env, argv[1], &is_typed);
  if (!is_typed || napi_get_typedarray_info(env, argv[1], &type, &length, &data, NULL, NULL) != napi_ok || type != napi_uint8_array) {
    napi_throw_type_error(env, "ERR_INVALID_ARG", "data must be a Uint8Array");
    return NULL;
  }
  struct iovec iov = {data, length};
  union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(int))];
  } control;
  struct msghdr msg;
  memset(&msg, 0, sizeof msg);
  memset(&control, 0, sizeof control);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (pass_fd >= 0) {
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof control.buf;
    struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cmsg), &pass_fd, sizeof(int));
  }
  ssize_t sent;
  do sent = sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
  while (sent < 0 && errno == EINTR);
  napi_value result;
  if (sent < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK) return throw_errno(env, errno, "sendmsg");
    napi_get_boolean(env, false, &result);
    return result;
  }
  napi_get_boolean(env, true, &result);
  return result;
}

/* The largest receive buffer seqpacketRecv allocates; ZDS uses 1024. */
#define MAX_RECV_BYTES (1 << 20)

/*
 * seqpacketRecv(fd, maxBytes) -> { data, fd, truncated, end } | null (nothing to read yet).
 * `truncated`: the message or its control data did not fit (MSG_TRUNC / MSG_CTRUNC); a truncated message
 * is an error for the caller, so any fd it carried is closed here and `fd` is -1. At most one fd is
 * accepted per message (more is MSG_CTRUNC). `end`: the peer closed (a zero-length read with the peer gone).
 */
static napi_value seqpacket_recv(napi_env env, napi_callback_info info) {
  int32_t args[2];
  if (!arg_int(env, info, 2, args)) return NULL;
  if (args[1] < 0 || args[1] > MAX_RECV_BYTES) return throw_errno(env, EINVAL, "recvmsg(maxBytes)");
  size_t capacity = (size_t)args[1];
  char *buffer = malloc(capacity > 0 ? capacity : 1);
  if (buffer == NULL) return throw_errno(env, ENOMEM, "recvmsg");
  struct iovec iov = {buffer, capacity};
  union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(int))];
  } control;
  struct msghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.buf;
  msg.msg_controllen = sizeof control.buf;
  ssize_t n;
  do n = recvmsg(args[0], &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    int err = errno;
    free(buffer);
    if (err == EAGAIN || err == EWOULDBLOCK) {
      napi_value null_value;
      napi_get_null(env, &null_value);
      return null_value;
    }
    return throw_errno(env, err, "recvmsg");
  }
  int received_fd = -1;
  for (struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg); cmsg != NULL; cmsg = CMSG_NXTHDR(&msg, cmsg)) {
    if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; i++) {
      int passed;
      memcpy(&passed, CMSG_DATA(cmsg) + i * sizeof(int), sizeof(int));
      if (received_fd < 0) received_fd = passed;
      else close(passed);
    }
  }
  int truncated = (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0;
  if (truncated && received_fd >= 0) {
    close(received_fd);
    received_fd = -1;
  }
  int end = 0;
  if (n == 0 && received_fd < 0 && !truncated) {
    /* A SEQPACKET read of 0 is either an empty message or the peer's close; only the latter hangs up. */
    struct pollfd p = {args[0], POLLIN | POLLRDHUP, 0};
    end = poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLRDHUP)) != 0;
  }
  size_t length = (size_t)n < capacity ? (size_t)n : capacity;
  napi_value result, data, fd_value, truncated_value, end_value;
  napi_create_buffer_copy(env, length, buffer, NULL, &data);
  free(buffer);
  napi_create_object(env, &result);
  napi_create_int32(env, received_fd, &fd_value);
  napi_get_boolean(env, truncated, &truncated_value);
  napi_get_boolean(env, end, &end_value);
  napi_set_named_property(env, result, "data", data);
  napi_set_named_property(env, result, "fd", fd_value);
  napi_set_named_property(env, result, "truncated", truncated_value);
  napi_set_named_property(env, result, "end", end_value);
  return result;
}

/* ---- readiness: poll(2) on the libuv threadpool, resolving a Promise ---------------------------- */

/* Bits of pollFd's `events` argument and result (independent of the platform's POLL* values). */
#define READY_READABLE 1
#define READY_WRITABLE 2
#define READY_HANGUP 4
#define READY_ERROR 8
#define READY_INVALID 16

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  int fd;
  short events;
  int timeout_ms;
  int ready;
  int err;
} poll_job;

static void poll_execute(napi_env env, void *data) {
  (void)env;
  poll_job *job = data;
  struct pollfd p = {job->fd, job->events, 0};
  int rc;
  do rc = poll(&p, 1, job->timeout_ms);
  while (rc < 0 && errno == EINTR);
  if (rc < 0) {
    job->err = errno;
    return;
  }
  if (rc == 0) return;
  job->ready = ((p.revents & (POLLIN | POLLRDHUP)) ? READY_READABLE : 0) | ((p.revents & POLLOUT) ? READY_WRITABLE : 0) |
               ((p.revents & POLLHUP) ? READY_HANGUP : 0) | ((p.revents & POLLERR) ? READY_ERROR : 0) | ((p.revents & POLLNVAL) ? READY_INVALID : 0);
}

static void poll_complete(napi_env env, napi_status status, void *data) {
  poll_job *job = data;
  napi_value value;
  if (status != napi_ok || job->err != 0) {
    int err = job->err != 0 ? job->err : EINTR;
    char message[160];
    napi_value code, text;
    snprintf(message, sizeof message, "poll failed: %s", strerror(err));
    napi_create_string_utf8(env, errno_code(err), NAPI_AUTO_LENGTH, &code);
    napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &text);
    napi_create_error(env, code, text, &value);
    napi_reject_deferred(env, job->deferred, value);
  } else {
    napi_create_int32(env, job->ready, &value);
    napi_resolve_deferred(env, job->deferred, value);
  }
  napi_delete_async_work(env, job->work);
  free(job);
}

/*
 * pollFd(fd, events, timeoutMs) -> Promise<ready bits> (0 on timeout). Holds one threadpool thread while
 * waiting, so callers keep timeoutMs short and loop; shutdownFd() on the socket wakes it at once.
 */
static napi_value poll_fd(napi_env env, napi_callback_info info) {
  int32_t args[3];
  if (!arg_int(env, info, 3, args)) return NULL;
  poll_job *job = calloc(1, sizeof *job);
  if (job == NULL) return throw_errno(env, ENOMEM, "poll");
  job->fd = args[0];
  job->events = (short)(((args[1] & READY_READABLE) ? POLLIN | POLLRDHUP : 0) | ((args[1] & READY_WRITABLE) ? POLLOUT : 0));
  job->timeout_ms = args[2] < 0 ? 0 : args[2];
  napi_value promise, name;
  if (napi_create_promise(env, &job->deferred, &promise) != napi_ok) {
    free(job);
    return NULL;
  }
  napi_create_string_utf8(env, "ambient_sys:poll", NAPI_AUTO_LENGTH, &name);
  if (napi_create_async_work(env, NULL, name, poll_execute, poll_complete, job, &job->work) != napi_ok || napi_queue_async_work(env, job->work) != napi_ok) {
    /* The promise is never settled; the throw is what the caller sees. */
    free(job);
    napi_throw_error(env, "EIO", "cannot queue poll work");
    return NULL;
  }
  return promise;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor functions[] = {
    {"originalDestination", NULL, original_destination, NULL, NULL, NULL, napi_enumerable, NULL},
    {"setMark", NULL, set_mark, NULL, NULL, NULL, napi_enumerable, NULL},
    {"getMark", NULL, get_mark, NULL, NULL, NULL, napi_enumerable, NULL},
    {"setTransparent", NULL, set_transparent, NULL, NULL, NULL, napi_enumerable, NULL},
    {"tcpSocket", NULL, tcp_socket, NULL, NULL, NULL, napi_enumerable, NULL},
    {"openNetns", NULL, open_netns, NULL, NULL, NULL, napi_enumerable, NULL},
    {"closeFd", NULL, close_fd, NULL, NULL, NULL, napi_enumerable, NULL},
    {"shutdownFd", NULL, shutdown_fd, NULL, NULL, NULL, napi_enumerable, NULL},
    {"tcpSocketIn", NULL, tcp_socket_in, NULL, NULL, NULL, napi_enumerable, NULL},
    {"tcpListenIn", NULL, tcp_listen_in, NULL, NULL, NULL, napi_enumerable, NULL},
    {"seqpacketConnect", NULL, seqpacket_connect, NULL, NULL, NULL, napi_enumerable, NULL},
    {"seqpacketListen", NULL, seqpacket_listen, NULL, NULL, NULL, napi_enumerable, NULL},
    {"seqpacketAccept", NULL, seqpacket_accept, NULL, NULL, NULL, napi_enumerable, NULL},
    {"seqpacketSend", NULL, seqpacket_send, NULL, NULL, NULL, napi_enumerable, NULL},
    {"seqpacketRecv", NULL, seqpacket_recv, NULL, NULL, NULL, napi_enumerable, NULL},
    {"pollFd", NULL, poll_fd, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof functions / sizeof functions[0], functions);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
