// Drive the gateway with the AWS SDK for JavaScript v3 at its defaults and print what it saw.
//
// tests/test_s3_js.py runs this script and checks the JSON it prints on stdout. Input comes
// from the environment: S3_ENDPOINT, S3_ACCESS_KEY, S3_SECRET_KEY, S3_REGION, S3_BUCKET (an
// existing, empty bucket) and DATA_DIR, which contains small.bin and large.bin to upload. The
// objects read back are written to DATA_DIR as *.out files for the test to compare.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Readable } from "node:stream";

import {
  CopyObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  S3Client,
  paginateListObjectsV2,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";

const env = process.env;
const bucket = env.S3_BUCKET;
const dataDir = env.DATA_DIR;
const PART_SIZE_BYTES = 5 * 1024 * 1024;
const ALGORITHMS = ["CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"];

function client(options = {}) {
  return new S3Client({
    endpoint: env.S3_ENDPOINT,
    region: env.S3_REGION,
    forcePathStyle: true,
    credentials: { accessKeyId: env.S3_ACCESS_KEY, secretAccessKey: env.S3_SECRET_KEY },
    maxAttempts: 1,
    ...options,
  });
}

async function bodyOf(response) {
  return Buffer.from(await response.Body.transformToByteArray());
}

// Run `action`; on an S3 error, return its name and HTTP status instead of throwing.
async function outcome(action) {
  try {
    return { ok: true, value: await action() };
  } catch (error) {
    return { ok: false, name: error.name, status: error.$metadata?.httpStatusCode };
  }
}

async function errorCode(response) {
  const match = /<Code>([^<]*)<\/Code>/.exec(await response.text());
  return match ? match[1] : "";
}

const s3 = client();
const small = readFileSync(join(dataDir, "small.bin"));
const large = readFileSync(join(dataDir, "large.bin"));
const seen = {};

const put = await s3.send(
  new PutObjectCommand({ Bucket: bucket, Key: "small.bin", Body: small, Metadata: { owner: "ann" } }),
);
seen.put = { etag: put.ETag, crc32: put.ChecksumCRC32 };
const got = await s3.send(
  new GetObjectCommand({ Bucket: bucket, Key: "small.bin", ChecksumMode: "ENABLED" }),
);
writeFileSync(join(dataDir, "small.out"), await bodyOf(got));
seen.get = { etag: got.ETag, crc32: got.ChecksumCRC32, metadata: got.Metadata };

// A stream of unknown length: lib-storage sends it as a multipart upload.
const pieces = [large.subarray(0, 3_000_000), large.subarray(3_000_000)];
const upload = new Upload({
  client: s3,
  params: { Bucket: bucket, Key: "dir/large.bin", Body: Readable.from(pieces) },
  partSize: PART_SIZE_BYTES,
});
seen.upload = { etag: (await upload.done()).ETag };
const whole = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: "dir/large.bin" }));
writeFileSync(join(dataDir, "large.out"), await bodyOf(whole));
const ranged = await s3.send(
  new GetObjectCommand({ Bucket: bucket, Key: "dir/large.bin", Range: "bytes=1000-1999" }),
);
writeFileSync(join(dataDir, "range.out"), await bodyOf(ranged));
seen.range = { contentRange: ranged.ContentRange, length: ranged.ContentLength };

seen.checksums = {};
for (const algorithm of ALGORITHMS) {
  const key = `checksum/${algorithm}`;
  const result = await outcome(async () => {
    const written = await s3.send(
      new PutObjectCommand({ Bucket: bucket, Key: key, Body: small, ChecksumAlgorithm: algorithm }),
    );
    const head = await s3.send(
      new HeadObjectCommand({ Bucket: bucket, Key: key, ChecksumMode: "ENABLED" }),
    );
    return { put: written[`Checksum${algorithm}`], head: head[`Checksum${algorithm}`] };
  });
  seen.checksums[algorithm] = result;
}

await s3.send(
  new CopyObjectCommand({ Bucket: bucket, Key: "copy.bin", CopySource: `${bucket}/small.bin` }),
);
writeFileSync(
  join(dataDir, "copy.out"),
  await bodyOf(await s3.send(new GetObjectCommand({ Bucket: bucket, Key: "copy.bin" }))),
);

// Presigned URLs, used with fetch as a browser or another service would.
const getUrl = await getSignedUrl(s3, new GetObjectCommand({ Bucket: bucket, Key: "small.bin" }), {
  expiresIn: 300,
});
const presignedGet = await fetch(getUrl);
writeFileSync(join(dataDir, "presigned.out"), Buffer.from(await presignedGet.arrayBuffer()));
// At its defaults the SDK signs the CRC32 of an empty body into a presigned PUT. S3 rejects
// any other body. The documented fix is requestChecksumCalculation WHEN_REQUIRED.
const defaultPutUrl = await getSignedUrl(
  s3,
  new PutObjectCommand({ Bucket: bucket, Key: "presigned-default.bin" }),
  { expiresIn: 300 },
);
const defaultPut = await fetch(defaultPutUrl, { method: "PUT", body: small });
const whenRequired = client({ requestChecksumCalculation: "WHEN_REQUIRED" });
const putUrl = await getSignedUrl(
  whenRequired,
  new PutObjectCommand({ Bucket: bucket, Key: "presigned.bin", Metadata: { via: "url" } }),
  { expiresIn: 300 },
);
const presignedPut = await fetch(putUrl, { method: "PUT", body: small });
const presignedHead = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: "presigned.bin" }));
seen.presigned = {
  getStatus: presignedGet.status,
  defaultPutStatus: defaultPut.status,
  defaultPutCode: await errorCode(defaultPut),
  putStatus: presignedPut.status,
  putMetadata: presignedHead.Metadata,
};

const keys = [];
for await (const page of paginateListObjectsV2({ client: s3, pageSize: 3 }, { Bucket: bucket })) {
  keys.push(...(page.Contents ?? []).map((entry) => entry.Key));
}
seen.keys = keys;
seen.missing = await outcome(() =>
  s3.send(new GetObjectCommand({ Bucket: bucket, Key: "no-such-key" })),
);
const deleted = await s3.send(
  new DeleteObjectsCommand({
    Bucket: bucket,
    Delete: { Objects: keys.map((key) => ({ Key: key })) },
  }),
);
seen.deleted = (deleted.Deleted ?? []).length;
seen.deleteErrors = deleted.Errors ?? [];

process.stdout.write(JSON.stringify(seen));
