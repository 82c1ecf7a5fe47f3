#include "security/certs.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <memory>

#include "util/error.h"
#include "util/proc.h"

namespace ferry::security {
namespace {

struct FileCloser {
  void operator()(FILE* f) const { std::fclose(f); }
};
using File = std::unique_ptr<FILE, FileCloser>;
using Key = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using Cert = std::unique_ptr<X509, decltype(&X509_free)>;

[[noreturn]] void openssl_fail(const char* what) { fail("cannot {}: OpenSSL error", what); }

Key new_key() {
  EVP_PKEY* k = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  if (!k) openssl_fail("generate a key");
  return Key(k, EVP_PKEY_free);
}

void write_key(const std::string& path, EVP_PKEY* key) {
  ::umask(077);
  File f(std::fopen(path.c_str(), "w"));
  if (!f) fail_errno(errno, "cannot write {}", path);
  ::fchmod(fileno(f.get()), 0600);
  if (!PEM_write_PrivateKey(f.get(), key, nullptr, nullptr, 0, nullptr, nullptr)) openssl_fail("write a key");
}

void write_cert(const std::string& path, X509* cert) {
  File f(std::fopen(path.c_str(), "w"));
  if (!f) fail_errno(errno, "cannot write {}", path);
  if (!PEM_write_X509(f.get(), cert)) openssl_fail("write a certificate");
}

Key read_key(const std::string& path) {
  File f(std::fopen(path.c_str(), "r"));
  if (!f) fail_errno(errno, "cannot read {}", path);
  EVP_PKEY* k = PEM_read_PrivateKey(f.get(), nullptr, nullptr, nullptr);
  if (!k) fail("{} holds no private key", path);
  return Key(k, EVP_PKEY_free);
}

Cert read_cert(const std::string& path) {
  File f(std::fopen(path.c_str(), "r"));
  if (!f) fail_errno(errno, "cannot read {}", path);
  X509* c = PEM_read_X509(f.get(), nullptr, nullptr, nullptr);
  if (!c) fail("{} holds no certificate", path);
  return Cert(c, X509_free);
}

void add_ext(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (!ext) openssl_fail("build a certificate extension");
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

Cert new_cert(const std::string& cn, EVP_PKEY* key, int days) {
  Cert c(X509_new(), X509_free);
  X509_set_version(c.get(), 2);
  unsigned char serial[16];
  RAND_bytes(serial, sizeof serial);
  serial[0] &= 0x7f;
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(c.get()));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(c.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(c.get()), 60L * 60 * 24 * days);
  X509_set_pubkey(c.get(), key);
  X509_NAME* name = X509_get_subject_name(c.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("ferry cluster"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  return c;
}

bool exists(const std::string& p) { return ::access(p.c_str(), F_OK) == 0; }

}  // namespace

void ensure_cluster_ca(const std::string& dir) {
  std::string cert_path = dir + "/ca.pem", key_path = dir + "/ca.key";
  if (exists(cert_path) && exists(key_path)) return;
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) fail_errno(errno, "cannot create {}", dir);
  Key key = new_key();
  Cert ca = new_cert("ferry cluster CA", key.get(), 3650);
  X509_set_issuer_name(ca.get(), X509_get_subject_name(ca.get()));
  add_ext(ca.get(), ca.get(), NID_basic_constraints, "critical,CA:TRUE,pathlen:0");
  add_ext(ca.get(), ca.get(), NID_key_usage, "critical,keyCertSign,cRLSign");
  add_ext(ca.get(), ca.get(), NID_subject_key_identifier, "hash");
  if (!X509_sign(ca.get(), key.get(), EVP_sha256())) openssl_fail("sign the CA");
  write_key(key_path, key.get());
  write_cert(cert_path, ca.get());
}

CertFiles node_cert_files(const std::string& dir, const std::string& node) {
  return {dir + "/ca.pem", dir + "/" + node + ".pem", dir + "/" + node + ".key"};
}

CertFiles issue_node_cert(const std::string& dir, const std::string& node, const std::string& ip) {
  Cert ca = read_cert(dir + "/ca.pem");
  Key ca_key = read_key(dir + "/ca.key");
  Key key = new_key();
  Cert c = new_cert(node, key.get(), 825);
  X509_set_issuer_name(c.get(), X509_get_subject_name(ca.get()));
  add_ext(c.get(), ca.get(), NID_basic_constraints, "critical,CA:FALSE");
  add_ext(c.get(), ca.get(), NID_key_usage, "critical,digitalSignature,keyEncipherment");
  add_ext(c.get(), ca.get(), NID_ext_key_usage, "serverAuth,clientAuth");
  std::string san = "DNS:" + node + (ip.empty() ? "" : ",IP:" + ip);
  add_ext(c.get(), ca.get(), NID_subject_alt_name, san.c_str());
  add_ext(c.get(), ca.get(), NID_authority_key_identifier, "keyid");
  if (!X509_sign(c.get(), ca_key.get(), EVP_sha256())) openssl_fail("sign a node certificate");
  CertFiles files = node_cert_files(dir, node);
  write_key(files.key, key.get());
  write_cert(files.cert, c.get());
  return files;
}

std::string read_pem(const std::string& path) { return proc::read_file(path); }

}  // namespace ferry::security
