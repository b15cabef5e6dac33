// Package replicas lets several kas replicas serve agents together: an
// agent registry in Redis (which replica holds which agent), the tokens
// replicas sign for each other, and the transport that forwards a proxied
// request to the replica that holds the agent over its private API.
//
// # Redis contract
//
// One sorted set per agent, at "<key_prefix>:agent:<agent name>". Each
// member is the private API URL of a replica that has at least one live
// session of the agent (several agentk replicas may be connected to
// different kas replicas); its score is when the entry expires, in Unix
// milliseconds. A replica
//   - adds or updates its member (ZADD) when the agent's first session
//     connects, and again every refresh period for every agent it holds,
//     so a Redis that lost its data is filled again without a kas restart;
//   - sets the key's own expiry to at least the TTL (PEXPIRE NX, then GT),
//     so a key nobody refreshes goes away, and prunes expired members
//     (ZREMRANGEBYSCORE) of replicas that died without cleaning up;
//   - removes its member (ZREM) when the agent's last session ends;
//   - when it starts shutting down, shortens its entries to the drain
//     timeout, so peers try it last while its agents move away.
//
// Readers take members whose score is in the future (ZRANGE BYSCORE).
// Nothing else is stored. Redis 7.0 or later is needed: PEXPIRE's NX and
// GT options came in 7.0 (ZRANGE BYSCORE in 6.2).
//
// # Private API
//
// A replica that receives a request for an agent it does not hold sends
// it to a peer that does, at <peer URL>/agents/<agent>/<API path>, with
// "Authorization: Bearer <JWT>". The JWT (HS256, the shared secret of
// private_api.authentication_secret_file) names the caller (sub, groups),
// the agent and the one request it is good for (the peer's URL, method,
// path and query); it is issued by "kas" for the audience
// "kas-private-api", lives TokenLifetime, and a peer accepts it once. The
// caller's own credentials are never forwarded.
// A peer serves only agents it holds: it answers 503 with the
// Kas-Agent-Not-Connected header otherwise, and never forwards again, so
// requests cannot loop. Only the receiving replica tries another peer,
// and only when nothing of the request body was sent yet.
package replicas
