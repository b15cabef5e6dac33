package check

import (
	"context"
	"crypto/tls"
	"net"
	"os"

	"github.com/redis/go-redis/v9"

	"kubetunnel/kas"
	"kubetunnel/kas/replicas"
)

// checkReplicas is kas check for several replicas: the private API's TLS,
// secret and advertised address, and a PING to Redis.
func checkReplicas(ctx context.Context, cfg *kas.Config, verdict func(item string, err error, detail string)) {
	p := cfg.PrivateAPI
	if p.Listen.CertificateFile != "" {
		_, err := tls.LoadX509KeyPair(p.Listen.CertificateFile, p.Listen.KeyFile)
		verdict("private_api.listen TLS", err, "")
	} else {
		verdict("private_api.listen "+p.Listen.Address, nil, " (plain HTTP between replicas)")
	}
	_, err := replicas.ReadSecret(p.AuthenticationSecretFile)
	verdict("private_api.authentication_secret_file", err, "")
	if bound, rerr := net.ResolveTCPAddr("tcp", p.Listen.Address); rerr != nil {
		verdict("private_api advertised address", rerr, "")
	} else {
		u, err := kas.AdvertiseURL(p, bound, os.Getenv)
		verdict("private_api advertised address", err, " "+u)
	}
	opts, err := kas.RedisOptions(cfg.Redis)
	if err != nil {
		verdict("redis "+cfg.Redis.Address, err, "")
		return
	}
	c := redis.NewClient(opts)
	defer c.Close()
	pctx, cancel := context.WithTimeout(ctx, cfg.Redis.DialTimeout+cfg.Redis.Timeout)
	defer cancel()
	verdict("redis "+cfg.Redis.Address, c.Ping(pctx).Err(), " (PING answered)")
}
