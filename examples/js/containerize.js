// The seed Package example (Metaparticle announcement): this program packages
// itself as a container and runs replicas of itself, each answering
// "Hello World: hostname: <replica>" on port 8080 (replica i on host port
// 8080 + i with the docker runner).
//
//   npm install && node containerize.js
//
// Changed from the seed for a local run: runner 'docker' (Docker or Podman,
// $DOCKER_HOST) instead of 'metaparticle' (Kubernetes), 2 replicas instead of
// 4, the repository from $MP_REPOSITORY (e.g. 127.0.0.1:5000/team), and
// `public` left out (ports bound on 127.0.0.1 only).
const http = require('http');
const os = require('os');
const mp = require('@metaparticle/package');

const port = 8080;

const server = http.createServer((request, response) => {
	console.log(request.url);
	response.end(`Hello World: hostname: ${os.hostname()}\n`);
});

mp.containerize(
	{
		ports: [8080],
		replicas: 2,
		runner: 'docker',
		repository: process.env.MP_REPOSITORY || 'docker.io/docker-user-goes-here',
		publish: true,
	},
	() => {
		server.listen(port, (err) => {
			if (err) {
				return console.log('server startup error: ', err);
			}
			console.log(`server up on ${port}`);
		});
	}
);
