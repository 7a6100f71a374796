// Each detector masks what it names and leaves look-alikes alone; overlaps go to the detector
// applied first; nothing takes more than linear time.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type DetectorName, detectorNames, isDetectorName, maskString } from "./detectors.ts";

function masked(text: string, detector: DetectorName): string {
  return maskString(text, [detector]).text;
}

function assertMasks(detector: DetectorName, samples: string[]): void {
  for (const sample of samples) {
    const result = maskString(`before ${sample} after`, [detector]);
    assert.equal(result.text, `before [MASKED:${detector}] after`, sample);
    assert.deepEqual(result.counts, { [detector]: 1 }, sample);
  }
}

function assertLeaves(detector: DetectorName, samples: string[]): void {
  for (const sample of samples) {
    const text = `before ${sample} after`;
    assert.deepEqual(maskString(text, [detector]), { text, counts: {} }, sample);
  }
}

/** A PEM block; built here so no complete key marker sits in the source for scanners to flag. */
function pem(label: string, body: string): string {
  return `-----BEGIN ${label}-----\n${body}\n-----END ${label}-----`;
}

const jwtHeaderHs256 = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";
const jwt = `${jwtHeaderHs256}.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c`;

describe("email detector", () => {
  it("masks addresses with dots, plus tags and subdomains", () => {
    assertMasks("email", [
      "bob@example.com",
      "first.last+newsletter@mail.example.co.uk",
      "user_name%x@sub-domain.example.io",
      "UPPER@EXAMPLE.ORG",
    ]);
  });

  it("leaves handles, hostless and TLD-less strings alone", () => {
    assertLeaves("email", ["@example.com", "bob@localhost", "bob@example.c", "bob@", "a @ b.com"]);
  });

  it("masks addresses glued to one another as one, leaving none of them", () => {
    assert.equal(masked("a@b.cc_bob@example.com", "email"), "[MASKED:email]");
    assert.equal(masked("x a.b+c@d-e.co1bob@example.com y", "email"), "x [MASKED:email] y");
  });

  it("keeps the punctuation around an address", () => {
    assert.equal(
      masked("<bob@example.com>, (amy@example.org).", "email"),
      "<[MASKED:email]>, ([MASKED:email]).",
    );
  });
});

describe("credit-card detector", () => {
  it("masks numbers of 13 to 19 digits that pass the Luhn check, grouped or not", () => {
    assertMasks("credit-card", [
      "4111 1111 1111 1111",
      "4111-1111-1111-1111",
      "4111111111111111",
      "378282246310005",
      "3782 822463 10005",
      "4222222222222",
      "6011000990139420007",
      "5555 5555 5555 4444",
    ]);
  });

  it("leaves numbers that fail the Luhn check alone", () => {
    assertLeaves("credit-card", ["4111 1111 1111 1112", "4111111111111112", "41111111111111111"]);
  });

  it("leaves a card-like number inside a longer digit run alone", () => {
    assertLeaves("credit-card", [
      "123454111111111111111",
      "0.4111111111111111",
      "4111111111111111.25",
      "e3b04111111111111111c4",
      "4111111111111111111111",
    ]);
  });

  it("leaves numbers with mixed separators or too few digits alone", () => {
    assertLeaves("credit-card", ["4111 1111-1111 1111", "411111111111", "4111  1111 1111 1111"]);
  });

  it("finds a card among neighbouring numbers of the same run", () => {
    assert.equal(
      masked("paid 4111 1111 1111 1111 12 25", "credit-card"),
      "paid [MASKED:credit-card] 12 25",
    );
    assert.equal(
      masked("4111111111111111 5555555555554444", "credit-card"),
      "[MASKED:credit-card] [MASKED:credit-card]",
    );
  });
});

describe("us-ssn detector", () => {
  it("masks AAA-GG-SSSS numbers", () => {
    assertMasks("us-ssn", ["123-45-6789", "078-05-1120", "899-99-9999"]);
  });

  it("leaves the never-issued ranges alone", () => {
    assertLeaves("us-ssn", [
      "000-12-3456",
      "666-12-3456",
      "900-12-3456",
      "999-12-3456",
      "123-00-4567",
      "123-45-0000",
    ]);
  });

  it("leaves other shapes and longer numbers alone", () => {
    assertLeaves("us-ssn", [
      "123456789",
      "1123-45-6789",
      "123-45-67890",
      "12-345-6789",
      "A123-45-6789",
    ]);
  });
});

describe("phone detector", () => {
  it("masks E.164 and common North American forms", () => {
    assertMasks("phone", [
      "(415) 555-0132",
      "415-555-0132",
      "415.555.0132",
      "415 555 0132",
      "+1 415 555 0132",
      "+1 (415) 555-0132",
      "+14155550132",
      "+44 20 7946 0958",
      "1-800-555-0199",
    ]);
  });

  it("leaves dates, timestamps, addresses and bare digit ids alone", () => {
    assertLeaves("phone", [
      "2024-01-15",
      "2024-01-15T10:30:00Z",
      "2024-01-15T10:30:00.123+05:30",
      "1700000000",
      "4155550132",
      "12345678901234567",
      "192.168.100.200",
      "v10.415.5550",
      "+1234567",
      "+1234567890123456",
    ]);
  });
});

describe("iban detector", () => {
  it("masks IBANs that pass the mod-97 check, grouped or not", () => {
    assertMasks("iban", [
      "DE89 3704 0044 0532 0130 00",
      "DE89370400440532013000",
      "GB82 WEST 1234 5698 7654 32",
      "GB82WEST12345698765432",
      "FR14 2004 1010 0505 0001 3M02 606",
      "NO9386011117947",
    ]);
  });

  it("leaves IBAN-shaped strings that fail the check alone", () => {
    assertLeaves("iban", [
      "DE89 3704 0044 0532 0130 01",
      "GB82WEST12345698765433",
      "GB28WEST12345698765432",
      "XDE89370400440532013000",
    ]);
  });

  it("masks a grouped IBAN followed by a word, and keeps the word", () => {
    assert.equal(masked("DE89 3704 0044 0532 0130 00 EURO", "iban"), "[MASKED:iban] EURO");
  });
});

describe("jwt detector", () => {
  it("masks signed, unsigned and encrypted tokens whose header names an alg", () => {
    assertMasks("jwt", [
      jwt,
      "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
      "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a2V5.aXY.Y2lwaGVy.dGFn",
    ]);
    assert.equal(
      masked(`Authorization: Bearer ${jwt}`, "jwt"),
      "Authorization: Bearer [MASKED:jwt]",
    );
  });

  it("leaves tokens without a JOSE header alone", () => {
    assertLeaves("jwt", [
      "eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiJ4In0.c2ln",
      "eyJub3QganNvbg.eyJ4IjoxfQ.c2ln",
      `${jwtHeaderHs256}.only-two-segments`,
      `x${jwt}`,
    ]);
  });
});

describe("private-key detector", () => {
  it("masks whole PEM blocks of every private key kind", () => {
    for (const label of [
      "PRIVATE KEY",
      "RSA PRIVATE KEY",
      "EC PRIVATE KEY",
      "OPENSSH PRIVATE KEY",
      "ENCRYPTED PRIVATE KEY",
    ]) {
      const key = pem(label, "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7");
      assertMasks("private-key", [key]);
    }
  });

  it("masks each of several blocks and keeps the text between them", () => {
    const text = `a ${pem("PRIVATE KEY", "QUJD")} b ${pem("EC PRIVATE KEY", "REVG")} c`;
    assert.deepEqual(maskString(text, ["private-key"]), {
      text: "a [MASKED:private-key] b [MASKED:private-key] c",
      counts: { "private-key": 2 },
    });
  });

  it("masks a block without its END line to the end of the text", () => {
    const truncated = "key: -----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA";
    assert.equal(masked(truncated, "private-key"), "key: [MASKED:private-key]");
  });

  it("leaves certificates and public keys alone", () => {
    assertLeaves("private-key", [pem("CERTIFICATE", "MIIB"), pem("PUBLIC KEY", "MIIB")]);
  });
});

describe("aws-access-key detector", () => {
  it("masks access key ids of every prefix", () => {
    assertMasks("aws-access-key", [
      "AKIAIOSFODNN7EXAMPLE",
      "ASIAY34FZKBOKMUTVV7A",
      "ABIA1234567890ABCDEF",
      "ACCA1234567890ABCDEF",
    ]);
  });

  it("leaves other lengths, prefixes, cases and glued ids alone", () => {
    assertLeaves("aws-access-key", [
      "AKIAIOSFODNN7EXAMPL",
      "AKIAIOSFODNN7EXAMPLE1",
      "xAKIAIOSFODNN7EXAMPLE",
      "akiaiosfodnn7example",
      "AIDAIOSFODNN7EXAMPLE",
    ]);
  });
});

describe("maskString", () => {
  it("runs only the detectors asked for", () => {
    const text = "bob@example.com 4111 1111 1111 1111";
    assert.deepEqual(maskString(text, ["credit-card"]), {
      text: "bob@example.com [MASKED:credit-card]",
      counts: { "credit-card": 1 },
    });
    assert.deepEqual(maskString(text, []), { text, counts: {} });
  });

  it("counts every match per detector", () => {
    const text = "a@example.com, b@example.com, 415-555-0132";
    assert.deepEqual(maskString(text, ["email", "phone"]).counts, { email: 2, phone: 1 });
  });

  it("gives an overlap to the detector applied first, whatever order the policy lists", () => {
    const key = pem("PRIVATE KEY", `${jwt}\nAKIAIOSFODNN7EXAMPLE\n4111111111111111\n415-555-0132`);
    const reversed = [...detectorNames].reverse();
    assert.deepEqual(maskString(key, reversed), {
      text: "[MASKED:private-key]",
      counts: { "private-key": 1 },
    });
    assert.deepEqual(maskString("4111111111111111@example.com", reversed).counts, { email: 1 });
  });

  it("never matches inside its own redactions", () => {
    const text = `${jwt} bob@example.com 4111 1111 1111 1111 123-45-6789 +14155550132 DE89370400440532013000`;
    const once = maskString(text, detectorNames);
    assert.equal(Object.keys(once.counts).length, 6);
    assert.deepEqual(maskString(once.text, detectorNames), { text: once.text, counts: {} });
  });

  it("finishes on megabyte-long adversarial inputs", () => {
    const megabyte = (unit: string) => unit.repeat(Math.ceil(2 ** 20 / unit.length));
    const adversarial = [
      "a.",
      "x@a.",
      "1 ",
      "1-",
      "+1 ",
      "123-45-",
      "(415) ",
      "eyJ.",
      "AB12 ",
      "-----BEGIN PRIVATE KEY-----",
    ];
    for (const unit of adversarial) {
      const result = maskString(megabyte(unit), detectorNames);
      assert.ok(result.text.length > 0, unit);
    }
  });
});

describe("isDetectorName", () => {
  it("accepts the policy's detector names and nothing else", () => {
    assert.ok(detectorNames.every(isDetectorName));
    assert.equal(isDetectorName("ssn"), false);
  });
});
