/*
 * The project's only native code: socket options Node does not expose. Node-API only (ABI-stable).
 * Each function takes a file descriptor and throws an Error whose `code` is the errno name.
 */
#define _GNU_SOURCE
#include <node_api.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/socket.h>
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

/*
 * tcpSocket(family, mark, transparent) -> fd: an unconnected, non-blocking TCP socket with SO_MARK
 * (when mark > 0) and IP_TRANSPARENT (when transparent != 0) set before its first packet. Node then
 * adopts it with `new net.Socket({ fd })` and connects it, so even the SYN carries the mark.
 */
static napi_value tcp_socket(napi_env env, napi_callback_info info) {
  int32_t args[3];
  if (!arg_int(env, info, 3, args)) return NULL;
  int family = args[0] == 6 ? AF_INET6 : AF_INET;
  int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, errno, "socket");
  if (args[1] > 0) {
    uint32_t mark = (uint32_t)args[1];
    if (setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof mark) != 0) {
      int err = errno;
      close(fd);
      return throw_errno(env, err, "setsockopt(SO_MARK)");
    }
  }
  if (args[2] != 0) {
    int on = 1;
    int rc = family == AF_INET6 ? setsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &on, sizeof on) : setsockopt(fd, SOL_IP, IP_TRANSPARENT, &on, sizeof on);
    if (rc != 0) {
      int err = errno;
      close(fd);
      return throw_errno(env, err, "setsockopt(IP_TRANSPARENT)");
    }
  }
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

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor functions[] = {
    {"originalDestination", NULL, original_destination, NULL, NULL, NULL, napi_enumerable, NULL},
    {"setMark", NULL, set_mark, NULL, NULL, NULL, napi_enumerable, NULL},
    {"getMark", NULL, get_mark, NULL, NULL, NULL, napi_enumerable, NULL},
    {"setTransparent", NULL, set_transparent, NULL, NULL, NULL, napi_enumerable, NULL},
    {"tcpSocket", NULL, tcp_socket, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof functions / sizeof functions[0], functions);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
