// Package pki creates and loads the certificates berth's API server needs on
// first start: a CA, a serving certificate for the API, an admin client
// certificate, and the admin kubeconfig that ties them together.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Bundle is the set of credentials in a data dir's pki folder.
type Bundle struct {
	Dir       string
	CA        *x509.Certificate
	CAKey     crypto.Signer
	CAPEM     []byte
	Serving   tls.Certificate
	AdminCert []byte // PEM
	AdminKey  []byte // PEM
}

const (
	caFile        = "ca.crt"
	caKeyFile     = "ca.key"
	servingFile   = "apiserver.crt"
	servingKey    = "apiserver.key"
	adminFile     = "admin.crt"
	adminKeyFile  = "admin.key"
	validity      = 10 * 365 * 24 * time.Hour
	servingLeaf   = 2 * 365 * 24 * time.Hour
	adminUserName = "berth-admin"
)

// AdminUser is the user name in the admin client certificate.
const AdminUser = adminUserName

// AdminGroup is the group in the admin client certificate, as kubeadm uses.
const AdminGroup = "system:masters"

// Ensure loads the credentials from dir, creating whatever is missing. The
// serving certificate is reissued when it does not cover hosts (so a changed
// --bind-address keeps working).
func Ensure(dir string, hosts []string) (*Bundle, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create pki dir: %w", err)
	}
	b := &Bundle{Dir: dir}
	var err error
	if b.CA, b.CAKey, b.CAPEM, err = loadOrCreateCA(dir); err != nil {
		return nil, err
	}
	if b.Serving, err = loadOrCreateServing(dir, b, hosts); err != nil {
		return nil, err
	}
	if b.AdminCert, b.AdminKey, err = loadOrCreateClient(dir, b, adminFile, adminKeyFile, adminUserName, []string{AdminGroup}); err != nil {
		return nil, err
	}
	return b, nil
}

// ClientPool returns the pool that verifies client certificates.
func (b *Bundle) ClientPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(b.CA)
	return p
}

// IssueClient creates a client certificate for name, signed by the CA (used
// for the credentials a node agent or controller is given).
func (b *Bundle) IssueClient(name string, groups []string) (certPEM, keyPEM []byte, err error) {
	return issue(b, pkix.Name{CommonName: name, Organization: groups}, nil, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, validity)
}

// IssueServing creates a serving certificate for hosts, signed by the CA.
func (b *Bundle) IssueServing(name string, hosts []string) (tls.Certificate, error) {
	certPEM, keyPEM, err := issue(b, pkix.Name{CommonName: name}, hosts, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, servingLeaf)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}

// WriteKubeconfig writes an admin kubeconfig for server to path.
func (b *Bundle) WriteKubeconfig(path, server, contextName string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[contextName] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: b.CAPEM}
	cfg.AuthInfos[contextName+"-admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: b.AdminCert, ClientKeyData: b.AdminKey}
	cfg.Contexts[contextName] = &clientcmdapi.Context{Cluster: contextName, AuthInfo: contextName + "-admin", Namespace: "default"}
	cfg.CurrentContext = contextName
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return fmt.Errorf("encode kubeconfig: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create kubeconfig dir: %w", err)
	}
	return writeFileAtomic(path, data, 0o600)
}

func loadOrCreateCA(dir string) (*x509.Certificate, crypto.Signer, []byte, error) {
	certPEM, err1 := os.ReadFile(filepath.Join(dir, caFile))
	keyPEM, err2 := os.ReadFile(filepath.Join(dir, caKeyFile))
	if err1 == nil && err2 == nil {
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("load CA from %s: %w (remove the pki folder to start over)", dir, err)
		}
		cert, err := x509.ParseCertificate(pair.Certificate[0])
		if err != nil {
			return nil, nil, nil, fmt.Errorf("parse CA: %w", err)
		}
		signer, ok := pair.PrivateKey.(crypto.Signer)
		if !ok {
			return nil, nil, nil, errors.New("CA key is not a signing key")
		}
		return cert, signer, certPEM, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "berth-ca"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("create CA: %w", err)
	}
	cert, _ := x509.ParseCertificate(der)
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := writeFileAtomic(filepath.Join(dir, caKeyFile), keyPEM, 0o600); err != nil {
		return nil, nil, nil, err
	}
	if err := writeFileAtomic(filepath.Join(dir, caFile), certPEM, 0o644); err != nil {
		return nil, nil, nil, err
	}
	return cert, key, certPEM, nil
}

func loadOrCreateServing(dir string, b *Bundle, hosts []string) (tls.Certificate, error) {
	certPath, keyPath := filepath.Join(dir, servingFile), filepath.Join(dir, servingKey)
	if pair, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil {
		if leaf, err := x509.ParseCertificate(pair.Certificate[0]); err == nil && covers(leaf, hosts) &&
			time.Until(leaf.NotAfter) > 30*24*time.Hour && leaf.CheckSignatureFrom(b.CA) == nil {
			return pair, nil
		}
	}
	certPEM, keyPEM, err := issue(b, pkix.Name{CommonName: "berth-apiserver"}, hosts, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, servingLeaf)
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return tls.Certificate{}, err
	}
	if err := writeFileAtomic(certPath, certPEM, 0o644); err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}

func loadOrCreateClient(dir string, b *Bundle, certName, keyName, user string, groups []string) ([]byte, []byte, error) {
	certPath, keyPath := filepath.Join(dir, certName), filepath.Join(dir, keyName)
	certPEM, err1 := os.ReadFile(certPath)
	keyPEM, err2 := os.ReadFile(keyPath)
	if err1 == nil && err2 == nil {
		if pair, err := tls.X509KeyPair(certPEM, keyPEM); err == nil {
			if leaf, err := x509.ParseCertificate(pair.Certificate[0]); err == nil && leaf.CheckSignatureFrom(b.CA) == nil {
				return certPEM, keyPEM, nil
			}
		}
	}
	certPEM, keyPEM, err := issue(b, pkix.Name{CommonName: user, Organization: groups}, nil, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, validity)
	if err != nil {
		return nil, nil, err
	}
	if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return nil, nil, err
	}
	if err := writeFileAtomic(certPath, certPEM, 0o644); err != nil {
		return nil, nil, err
	}
	return certPEM, keyPEM, nil
}

func issue(b *Bundle, subject pkix.Name, hosts []string, usage []x509.ExtKeyUsage, life time.Duration) ([]byte, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      subject,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(life),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  usage,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, b.CA, key.Public(), b.CAKey)
	if err != nil {
		return nil, nil, fmt.Errorf("issue certificate for %s: %w", subject.CommonName, err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

func covers(c *x509.Certificate, hosts []string) bool {
	for _, h := range hosts {
		if h == "" {
			continue
		}
		if c.VerifyHostname(h) != nil {
			return false
		}
	}
	return true
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		return big.NewInt(time.Now().UnixNano())
	}
	return n
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
