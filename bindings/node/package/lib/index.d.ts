// Type definitions for @metaparticle/package.

export interface ShardSpec {
  shards: number;
  urlPattern?: string;
}

export interface JobSpec {
  count: number;
}

export interface FileSpec {
  /** Host path. */
  src: string;
  /** Path in the image. */
  dest: string;
}

/** The seed options (SPEC section 7); unknown names are an error naming them. */
export interface Options {
  /** Image and container name; default: the main script's name as a DNS label. */
  name?: string;
  /** Image prefix: the image is repository/name:tag (e.g. "docker.io/user", "127.0.0.1:5000/team"). */
  repository?: string;
  /** Default "latest". */
  tag?: string;
  /** TCP ports the program listens on; replica i publishes port p on host port p + i (docker runner). */
  ports?: number[];
  /** Default 1. */
  replicas?: number;
  /** "docker" (default; Podman's compatible API works too), "metaparticle" or "kubernetes". */
  runner?: 'docker' | 'metaparticle' | 'kubernetes';
  /** Push the image to `repository` (required then). */
  publish?: boolean;
  /** Expose the ports beyond this machine (docker: 0.0.0.0; Kubernetes: LoadBalancer). */
  public?: boolean;
  shardSpec?: ShardSpec;
  jobSpec?: JobSpec;
  namespace?: string;
  /** Names of Kubernetes Secrets (type kubernetes.io/dockerconfigjson) the pods pull a private image with. */
  imagePullSecrets?: string[];
  /** Added to the image's environment. */
  env?: Record<string, string>;
  /** Extra files copied into the image. */
  files?: FileSpec[];
  /** Not supported yet (MP_EINVAL): images are built from scratch. */
  baseImage?: string;
  /** Print the image config and the runner's objects instead of acting. */
  dryRun?: boolean;
  /** Leave the containers running on Ctrl-C. */
  keepRunning?: boolean;
  /** No progress lines on stderr. */
  quiet?: boolean;
  /** What the container runs; default: [node, the main script, its arguments]. */
  command?: string[];
  /** Extra host paths copied into the image at the same path (added to node and the app's directory). */
  include?: string[];
  /** The container's working directory; default: the app's directory. */
  workingDir?: string;
}

export interface RenderResult {
  image: { reference: string; digest: string; config: any; manifest: any };
  docker: Array<{ name: string; body: any }>;
  kubernetes: any[];
  /** Always present; empty when there are none. */
  warnings: string[];
}

/** An Error from the core: code is the MP_* name, errno the numeric code. */
export interface MetaparticleError extends Error {
  code: string;
  errno: number;
}

/**
 * Inside a container: run main; the Promise resolves with its (awaited) result.
 * Outside: build the image, push it when `publish`, run it and stream the
 * replicas' output until Ctrl-C (then remove them); resolves with the exit code.
 */
export function containerize<T>(options: Options, main: () => T | Promise<T>): Promise<T | number>;
export function containerize<T>(main: () => T | Promise<T>): Promise<T | number>;

/** What containerize would build and create, without side effects. */
export function render(options?: Options): RenderResult;

/** True inside a container built by containerize. */
export function inContainer(): boolean;

/** libmetaparticle's version. */
export const version: string;
