/* Preloaded into the servers of scripts/cluster.py's LocalCluster: a socket bound to every interface is bound to
 * the loopback instead. valkey-search's coordinator binds its gRPC port to [::] and has no option to choose
 * its address, and it answers any peer without a password: on a laptop's network it must not be reachable. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

typedef int (*bind_function)(int, const struct sockaddr *, socklen_t);

int bind(int socket, const struct sockaddr *address, socklen_t length) {
    static bind_function real_bind;
    if (!real_bind) real_bind = (bind_function)dlsym(RTLD_NEXT, "bind");
    if (address && address->sa_family == AF_INET6 && length >= sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 loopback = *(const struct sockaddr_in6 *)address;
        if (IN6_IS_ADDR_UNSPECIFIED(&loopback.sin6_addr)) {
            /* ::ffff:127.0.0.1, IPv4's loopback on a dual-stack socket: where the other nodes connect */
            static const unsigned char mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1};
            memcpy(&loopback.sin6_addr, mapped, sizeof mapped);
            return real_bind(socket, (const struct sockaddr *)&loopback, sizeof loopback);
        }
    } else if (address && address->sa_family == AF_INET && length >= sizeof(struct sockaddr_in)) {
        struct sockaddr_in loopback = *(const struct sockaddr_in *)address;
        if (loopback.sin_addr.s_addr == htonl(INADDR_ANY)) {
            loopback.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            return real_bind(socket, (const struct sockaddr *)&loopback, sizeof loopback);
        }
    }
    return real_bind(socket, address, length);
}

/* Valkey loads a module with RTLD_DEEPBIND: the module's own libraries (gRPC's among them) would then take
 * libc's bind() before the one above. So this library is also the module that Valkey loads: it loads
 * valkey-search (named by CLIPSEARCH_SEARCH_MODULE) without RTLD_DEEPBIND, and hands it Valkey's call. */
#include <stdio.h>
#include <stdlib.h>

typedef int (*on_load_function)(void *context, void **arguments, int count);

int ValkeyModule_OnLoad(void *context, void **arguments, int count) {
    const char *path = getenv("CLIPSEARCH_SEARCH_MODULE");
    void *module = path ? dlopen(path, RTLD_NOW | RTLD_LOCAL) : NULL;
    on_load_function on_load = module ? (on_load_function)dlsym(module, "ValkeyModule_OnLoad") : NULL;
    if (!on_load) {
        fprintf(stderr, "loopback_bind: cannot load valkey-search from CLIPSEARCH_SEARCH_MODULE=%s: %s\n",
                path ? path : "(unset)", dlerror());
        return 1; /* VALKEYMODULE_ERR */
    }
    return on_load(context, arguments, count);
}
