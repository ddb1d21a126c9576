package kmsplugin

import (
	"context"
	"errors"
	"net"
	"slices"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	grpcpeer "google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/dcaas/dcaas/internal/peer"
)

// peerCreds are gRPC transport credentials that encrypt nothing (the
// socket is local) and record who is on the other end: the kernel's
// SO_PEERCRED of the connection.
type peerCreds struct{}

// peerInfo is what peerCreds learned about a connection.
type peerInfo struct {
	credentials.CommonAuthInfo
	cred peer.Cred
	err  error // why cred is unknown
}

func (peerInfo) AuthType() string { return "unix-peercred" }

func (peerCreds) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	cred, err := peer.CredOf(c)
	return c, peerInfo{CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.NoSecurity}, cred: cred, err: err}, nil
}

func (peerCreds) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("kmsplugin: peerCreds are for the server side")
}

func (peerCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "unix-peercred"}
}

func (peerCreds) Clone() credentials.TransportCredentials { return peerCreds{} }

func (peerCreds) OverrideServerName(string) error { return nil }

// authorize admits a call only from an allowed uid: Unauthenticated when
// the caller's credentials are unknown, PermissionDenied for another uid.
func (p *Plugin) authorize(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	pr, ok := grpcpeer.FromContext(ctx)
	var info peerInfo
	if ok {
		info, ok = pr.AuthInfo.(peerInfo)
	}
	if !ok || info.err != nil {
		return nil, status.Error(codes.Unauthenticated, "kmsplugin: the caller's identity could not be established (not a Unix socket connection?)")
	}
	if !slices.Contains(p.allow, info.cred.UID) {
		p.cfg.Logger.Warn("kmsplugin: call refused", "uid", info.cred.UID, "pid", info.cred.PID)
		return nil, status.Errorf(codes.PermissionDenied, "kmsplugin: Unix user %d may not use this KMS plugin", info.cred.UID)
	}
	return h(ctx, req)
}
