/* The C ABI of libmalcolm_agent.so (crate agent-ffi): the agent server's session in the
 * caller's process. Requests and replies are encoded bridge Envelopes, exactly the bytes a
 * ZeroMQ DEALER would send and receive; the session validates and decides as the server does.
 * One handle serves one env, called from one thread at a time. */
#ifndef MALCOLM_AGENT_H
#define MALCOLM_AGENT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped whenever a signature below changes; loaders refuse another value. */
#define MALCOLM_AGENT_ABI_VERSION 1u

typedef struct MalcolmAgent MalcolmAgent;

/* What an agent has done so far; for a learner, also the learner's own figures. */
typedef struct MalcolmAgentStats {
    uint64_t steps;                 /* Steps answered with a Placement */
    uint64_t decisions;             /* tasks placed */
    uint64_t placed_behind_paused;  /* placed across a PFC-paused link at decision time */
    uint64_t errors;                /* requests answered with an Error */
    uint64_t learner_updates;
    uint64_t transitions_inserted;
    uint64_t transitions_dropped;   /* lost on the way to the learner (0 with the limiter) */
    double samples_per_insert;      /* achieved replay ratio */
    double env_wait_s;              /* time Steps waited for the learner to keep the ratio */
} MalcolmAgentStats;

uint32_t malcolm_agent_abi_version(void);

/* Makes an agent from `agent-server serve`-style flags (whitespace-separated, no quoting):
 * --policy, --agents-config, --mode, --checkpoint (loaded when the file exists; saved at close
 * in train mode), --max-message-bytes. NULL on failure, with the reason in err
 * (NUL-terminated, truncated to err_len). */
MalcolmAgent* malcolm_agent_open(const char* flags, char* err, size_t err_len);

/* Answers one request. On 0, *reply / *reply_len hold the reply (an Envelope; an Error
 * envelope for refused input), owned by the agent and valid until the next call or close.
 * Non-zero only when the agent itself failed (a panic), with the reason in err. */
int malcolm_agent_call(MalcolmAgent* agent, const uint8_t* request, size_t request_len,
                       const uint8_t** reply, size_t* reply_len, char* err, size_t err_len);

/* Fills *out. Non-zero only for NULL arguments. */
int malcolm_agent_stats(const MalcolmAgent* agent, MalcolmAgentStats* out);

/* Saves the checkpoint (train mode, when --checkpoint was given) and frees the agent. Non-zero when the
 * save failed, with the reason in err; the agent is freed either way. NULL is ignored. */
int malcolm_agent_close(MalcolmAgent* agent, char* err, size_t err_len);

#ifdef __cplusplus
}
#endif

#endif
