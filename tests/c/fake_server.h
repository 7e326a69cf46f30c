/* A scripted TCP responder on 127.0.0.1 for the C API tests: a fake of a
 * misbehaving (or not yet updated) mp-sidecar. It parses just enough of each
 * request (request line, Content-Length, body) to hand it to a handler, and
 * writes back whatever bytes the handler returns. Not an HTTP implementation. */
#ifndef MP_TEST_FAKE_SERVER_H
#define MP_TEST_FAKE_SERVER_H

#include <stddef.h>

typedef struct fake_server fake_server;

/* Special answers a handler may return instead of bytes to send. */
#define FAKE_CLOSE ((const char *)1)  /* close without answering (curl: "Empty reply") */
#define FAKE_HANG ((const char *)2)   /* never answer; keep the connection open */
#define FAKE_HUGE ((const char *)3)   /* 200 with a body that never ends */
#define FAKE_RESET ((const char *)4)  /* reset the connection (RST) */
#define FAKE_STREAM ((const char *)5) /* 200 chunked ndjson; lines via fake_stream_send */

/* One request: `index` counts requests from 0 across all connections. Write
 * a reply into out (at most outlen bytes, e.g. with fake_reply) and return
 * it, or return one of the FAKE_* markers. Runs on a connection thread. */
typedef const char *(*fake_handler)(void *ud, int index, const char *method, const char *path,
                                    const char *body, char *out, size_t outlen);

fake_server *fake_start(fake_handler handler, void *ud);
/* Stop: close the listener and every connection, join the threads, free. */
void fake_stop(fake_server *f);
const char *fake_url(fake_server *f);
int fake_port(fake_server *f);
int fake_request_count(fake_server *f);

/* Format a complete HTTP/1.1 response with a JSON body into out. */
const char *fake_reply(char *out, size_t outlen, int status, const char *json);

/* Streams (FAKE_STREAM answers): how many were opened so far; send one line
 * (a newline is added) as a chunk on the newest open stream (0 on success);
 * wait until the client closes stream number `n` (0-based), returning the
 * monotonic time in ms it was seen closed, or -1 on timeout; close stream `n`
 * from the server side. */
int fake_stream_count(fake_server *f);
int fake_stream_send(fake_server *f, const char *line);
double fake_stream_wait_closed(fake_server *f, int n, int timeout_ms);
void fake_stream_close(fake_server *f, int n);
/* A line sent on every stream as soon as it opens ("" = none). */
void fake_stream_set_greeting(fake_server *f, const char *line);
/* Wait until at least `n` streams were opened; 0 on success. */
int fake_stream_wait_count(fake_server *f, int n, int timeout_ms);

#endif
